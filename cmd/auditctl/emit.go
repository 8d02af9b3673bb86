package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/schemas"
)

// maxLineBytes bounds one input line; a longer line is rejected (it could
// not fit in a Kafka message anyway) and reading goes on.
const maxLineBytes = 4 << 20

func emitCommand() cli.Command {
	return cli.Command{
		Name:    "emit",
		Summary: "validate events (one JSON object per line) and send them to Kafka",
		Run: func(ctx context.Context, args []string) error {
			return runEmit(ctx, args, os.Stdin, os.Stdout, os.Stderr)
		},
	}
}

// runEmit is the emit command with its streams passed in, for tests.
func runEmit(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := emitter.DefaultConfig()
	cfg.RegisterFlags(fs)
	var file, schemasDir string
	fs.StringVar(&file, "file", "", "read events from `FILE` instead of standard input")
	fs.StringVar(&file, "f", "", "short for --file `FILE`")
	fs.StringVar(&schemasDir, "schemas-dir", "", "`DIR` of schema files overriding and extending the built-in schemas (layout v<VERSION>/<ACTION>.json)")
	stopOnError := fs.Bool("stop-on-error", false, "stop at the first line that cannot be emitted (by default it is reported and the rest are emitted)")
	dryRun := fs.Bool("dry-run", false, "validate every line and send nothing")
	concurrency := fs.Int("concurrency", 64, "events in flight at once; Kafka batches them together")
	fs.Usage = config.Usage(fs, "auditctl emit [flags] [-f FILE]",
		`Reads audit events, one JSON object per line, from FILE or standard input,
validates each exactly as the ingester does, fills in a missing id (UUIDv7)
and occurred_at (now), and sends it to Kafka keyed by its id.
A line that cannot be emitted is reported on standard error as "line N: reason"
and the others are still emitted, unless --stop-on-error is given. Blank lines
are skipped. Prints a summary; exits 1 when any line was not emitted.`)
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.UsageError("%v", err)
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected argument %q: give the input file with -f", fs.Arg(0))
	}
	if *concurrency < 1 {
		return cli.UsageError("--concurrency must be at least 1")
	}
	if schemasDir != "" {
		reg, err := schemas.Load(schemasDir)
		if err != nil {
			return err
		}
		cfg.Schemas = reg
	}
	in := stdin
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	e, err := emitter.New(cfg)
	if err != nil {
		return cli.UsageError("%v", err)
	}
	defer e.Close()

	var (
		mu       sync.Mutex // guards stderr and the counts below
		emitted  int
		rejected int
		// stopped ends reading at the first failure with --stop-on-error;
		// events already handed to Kafka are still sent.
		stopped atomic.Bool
	)
	report := func(line int, err error) {
		mu.Lock()
		defer mu.Unlock()
		rejected++
		fmt.Fprintf(stderr, "line %d: %v\n", line, err)
		if *stopOnError {
			stopped.Store(true)
		}
	}

	type job struct {
		line int
		data []byte
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if _, err := e.EmitJSON(ctx, j.data); err != nil {
					report(j.line, err)
					continue
				}
				mu.Lock()
				emitted++
				mu.Unlock()
			}
		}()
	}

	r := bufio.NewReaderSize(in, 64<<10)
	var readErr error
	for n := 1; ctx.Err() == nil && !stopped.Load(); n++ {
		line, tooLong, err := readLine(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = fmt.Errorf("line %d: %w", n, err)
			}
			break
		}
		if tooLong {
			report(n, fmt.Errorf("longer than %d bytes", maxLineBytes))
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		// Validation happens here, in input order, so --stop-on-error stops
		// exactly at the first invalid line; only sending is concurrent.
		_, canonical, err := e.Prepare(line)
		if err != nil {
			report(n, err)
			continue
		}
		if *dryRun {
			mu.Lock()
			emitted++
			mu.Unlock()
			continue
		}
		select {
		case jobs <- job{line: n, data: canonical}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if err := e.Close(); err != nil && readErr == nil {
		readErr = err
	}

	verb := "emitted"
	if *dryRun {
		verb = "valid"
	}
	fmt.Fprintf(stdout, "%s %d, rejected %d\n", verb, emitted, rejected)
	switch {
	case readErr != nil:
		return readErr
	case rejected > 0:
		return fmt.Errorf("%d line(s) not emitted", rejected)
	}
	return ctx.Err()
}

// readLine returns the next line without its newline. A line longer than
// maxLineBytes is skipped and reported as tooLong. At the end of the input
// it returns io.EOF.
func readLine(r *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxLineBytes {
			tooLong = true
		} else {
			line = append(line, chunk...)
		}
		switch {
		case err == nil:
			return bytes.TrimRight(line, "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(line) > 0 || tooLong):
			return line, tooLong, nil
		default:
			return nil, false, err
		}
	}
}
