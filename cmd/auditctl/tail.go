package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

func tailCommand() cli.Command {
	return cli.Command{Name: "tail", Summary: "stream events in ingestion order (-f follows); resumes from a cursor file", Run: runTail}
}

func runTail(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	var ff filterFlags
	ff.register(fs)
	var follow bool
	fs.BoolVar(&follow, "follow", false, "keep the stream open and print new events as they are stored")
	fs.BoolVar(&follow, "f", false, "short for --follow")
	cursorFile := fs.String("cursor-file", "", "`file` holding the cursor: read at start to resume, rewritten after every event")
	cursor := fs.String("cursor", "", "resume after this cursor (overrides --cursor-file at start)")
	fs.Usage = config.Usage(fs, "auditctl tail [-f] [flags]",
		"Prints the events matching the filters in ingestion order, one JSON object per line, through StreamEvents. "+
			"Without a cursor, --since is where to start in ingestion time. With --cursor-file a restarted tail resumes exactly after the last event it printed.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	req := &auditv1.StreamEventsRequest{Follow: follow, Cursor: *cursor}
	if err := ff.fill(req); err != nil {
		return err
	}
	if req.Cursor == "" && *cursorFile != "" {
		b, err := os.ReadFile(*cursorFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("--cursor-file: %w", err)
		default:
			req.Cursor = strings.TrimSpace(string(b))
		}
	}
	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	stream, err := client.StreamEvents(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the cursor file is up to date
			}
			return err
		}
		if err := printJSON(os.Stdout, msg.GetEvent()); err != nil {
			return err
		}
		if *cursorFile != "" {
			if err := writeFileAtomic(*cursorFile, msg.GetCursor()+"\n"); err != nil {
				return fmt.Errorf("--cursor-file: %w", err)
			}
		}
	}
}

// writeFileAtomic replaces path with data through a rename, so a crash
// leaves either the old cursor or the new one, never half of one.
func writeFileAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
