package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

func exportCommand() cli.Command {
	return cli.Command{Name: "export", Summary: "download matching events as CSV or NDJSON (REST, streaming)", Run: func(ctx context.Context, args []string) error {
		return runExport(ctx, args, os.Stdout, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
	}}
}

// runExport downloads GET /v1/events:export into a file or stdout. A
// download counts as complete only when the body ended cleanly and the
// server sent the trailer X-Export-Status: complete (see package export);
// anything else is an error, and a file download is then left as
// FILE.partial, never as FILE.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ff filterFlags
	ff.register(fs)
	baseURL := fs.String("url", "http://localhost:8080", "base `URL` of the REST API of auditlog serve")
	token := fs.String("token", "", "API token, sent as `Authorization: Bearer <token>`")
	var file string
	fs.StringVar(&file, "file", "", "write to this `file` (written as FILE.partial, renamed when complete); default stdout")
	fs.StringVar(&file, "o", "", "shorthand for --file")
	format := fs.String("format", "csv", "csv or ndjson")
	columns := fs.String("columns", "", "CSV `columns` in order, comma-separated (default id,occurred_at,action,version,success,actor,target,scope,payload,metadata,request)")
	order := fs.String("order", "desc", "desc (newest first) or asc")
	noEscape := fs.Bool("no-formula-escape", false, "keep CSV cells that start with = + - @ tab or CR verbatim (default: prefixed with ')")
	fs.Usage = config.Usage(fs, "auditctl export [flags] [-o FILE]",
		"Downloads every event matching the filters through GET /v1/events:export, streaming, to FILE or stdout. "+
			"Progress (rows, bytes, rate) goes to stderr when it is a terminal. If the server reports a failure mid-download, "+
			"auditctl exits non-zero with the server's message and leaves FILE.partial instead of FILE.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected arguments %q", fs.Args())
	}
	req := &auditv1.ExportEventsRequest{Format: *format, Order: *order, NoFormulaEscape: *noEscape}
	if *columns != "" {
		req.Columns = []string{*columns}
	}
	if err := ff.fill(req); err != nil {
		return err
	}
	u, err := url.Parse(*baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cli.UsageError("--url %q: want http(s)://host:port", *baseURL)
	}
	u = u.JoinPath("/v1/events:export")
	u.RawQuery = queryValues(req).Encode()

	httpReq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if *token != "" {
		httpReq.Header.Set("Authorization", "Bearer "+*token)
	}
	// No Timeout: a big export legitimately takes minutes; Ctrl-C cancels.
	resp, err := http.DefaultClient.Do(httpReq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := strings.TrimSpace(string(body))
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += " (retry after " + ra + "s)"
		}
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}

	var out io.Writer = stdout
	var f *os.File
	partial := file + ".partial"
	if file != "" && file != "-" {
		if f, err = os.Create(partial); err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	counter := &progressWriter{w: out, newline: []byte("\r\n"), header: 1, start: time.Now()}
	if *format == "ndjson" {
		counter.newline, counter.header = []byte("\n"), 0
	}
	if progress {
		counter.report = stderr
	}
	_, copyErr := io.Copy(counter, resp.Body)
	counter.finish()
	status := resp.Trailer.Get("X-Export-Status")
	switch {
	case copyErr != nil && ctx.Err() != nil:
		err = fmt.Errorf("interrupted after %d bytes: %w", counter.bytes, ctx.Err())
	case copyErr != nil || status != "complete":
		// The server's own words are the last line it sent.
		reason := counter.serverError()
		if reason == "" && copyErr != nil {
			reason = copyErr.Error()
		} else if reason == "" {
			reason = "the server did not confirm the export was complete (no X-Export-Status trailer)"
		}
		err = fmt.Errorf("export failed after %d bytes: %s", counter.bytes, reason)
	}
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w (the partial download is in %s)", err, partial)
		}
		if err := os.Rename(partial, file); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if progress {
		fmt.Fprintf(stderr, "exported %s rows to %s\n", resp.Trailer.Get("X-Export-Rows"), displayName(file))
	}
	return nil
}

func displayName(file string) string {
	if file == "" || file == "-" {
		return "stdout"
	}
	return file
}

// queryValues renders the set fields of a request as query parameters named
// after the proto fields, which is how the server reads them.
func queryValues(req *auditv1.ExportEventsRequest) url.Values {
	v := url.Values{}
	req.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		name := string(fd.Name())
		if fd.IsList() {
			l := val.List()
			for i := range l.Len() {
				v.Add(name, fmt.Sprint(l.Get(i).Interface()))
			}
			return true
		}
		v.Set(name, fmt.Sprint(val.Interface()))
		return true
	})
	return v
}

// progressWriter counts what passes through it, keeps the tail (to show the
// server's error line) and, with report set, prints progress about four
// times a second.
type progressWriter struct {
	w       io.Writer
	newline []byte
	// header is the number of lines that are not rows.
	header int64
	report io.Writer
	start  time.Time
	last   time.Time
	bytes  int64
	lines  int64
	tail   []byte
}

const tailBytes = 4096

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.bytes += int64(n)
	p.lines += int64(bytes.Count(b[:n], p.newline))
	p.tail = append(p.tail, b[:n]...)
	if len(p.tail) > 2*tailBytes {
		p.tail = append(p.tail[:0], p.tail[len(p.tail)-tailBytes:]...)
	}
	if p.report != nil && time.Since(p.last) >= 250*time.Millisecond {
		p.last = time.Now()
		p.print("")
	}
	return n, err
}

func (p *progressWriter) print(end string) {
	secs := time.Since(p.start).Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	fmt.Fprintf(p.report, "\r%d rows  %.1f MB  %.0f rows/s  %.1f MB/s %s", max(p.lines-p.header, 0), float64(p.bytes)/1e6,
		float64(p.lines)/secs, float64(p.bytes)/1e6/secs, end)
}

func (p *progressWriter) finish() {
	if p.report != nil {
		p.print("\n")
	}
}

// serverError returns the error line of a failed export (CSV #ERROR record
// or NDJSON {"error": …} line) from the end of the download, or "".
func (p *progressWriter) serverError() string {
	lines := strings.Split(strings.TrimRight(string(p.tail), "\r\n"), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if strings.HasPrefix(last, "#ERROR:") || strings.HasPrefix(last, `{"error":`) {
		return last
	}
	return ""
}
