package sqlcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ChDBVersion is the @chdb/lib-linux-x64-gnu release scripts/chdb/setup.sh
// installs; keep the two in step.
const ChDBVersion = "26.5.3"

// SetupHint says how to get chDB; every "not found" error carries it.
const SetupHint = "run scripts/chdb/setup.sh (downloads @chdb/lib-linux-x64-gnu, about 170 MB, once) " +
	"or point AUDITLOG_CHDB_DIR at the directory it prints"

// ChDB runs statements on current ClickHouse in a chdb-run process. Every
// Run starts a new process on the same data directory, so tables and rows
// persist from one Run to the next, but session state (USE, SET) does not.
type ChDB struct {
	// Bin is the chdb-run executable.
	Bin string
	// DataDir holds the databases, like a server's --path.
	DataDir string
}

// FindChDB locates chdb-run: in $AUDITLOG_CHDB_DIR, or else where
// scripts/chdb/setup.sh puts it by default. The error says how to set it up.
func FindChDB() (string, error) {
	dir := os.Getenv("AUDITLOG_CHDB_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("chDB: no home directory (%v): %s", err, SetupHint)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "auditlog", "chdb-"+ChDBVersion)
	}
	bin := filepath.Join(dir, "chdb-run")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("chDB not set up (%s missing): %s", bin, SetupHint)
	}
	return bin, nil
}

// Result is the outcome of one statement.
type Result struct {
	// Output is what the statement printed in the requested format.
	Output []byte
	// Err is ClickHouse's error message, or nil when the statement succeeded.
	Err error
}

// sessionSettings are set before the statements of every Run, to make
// current ClickHouse print what 18.16 prints: since 25.x JSON formats no
// longer quote 64-bit integers by default; 18.16 does.
var sessionSettings = []string{
	"SET output_format_json_quote_64bit_integers = 1",
}

// Run runs stmts in order on one connection and returns one Result per
// statement; a failing statement does not stop the ones after it. format is
// the output format of every statement (e.g. "JSONCompact"). The error is
// for chdb-run itself failing, not for a statement.
func (c *ChDB) Run(format string, stmts ...string) ([]Result, error) {
	var in bytes.Buffer
	for i, s := range append(slices.Clone(sessionSettings), stmts...) {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("statement %d holds a NUL byte, which separates statements for chdb-run", i)
		}
		if i > 0 {
			in.WriteByte(0)
		}
		in.WriteString(s)
	}
	cmd := exec.Command(c.Bin, c.DataDir, format)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", c.Bin, err, strings.TrimSpace(stderr.String()))
	}
	results, err := parseRecords(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", c.Bin, err)
	}
	if len(results) != len(sessionSettings)+len(stmts) {
		return nil, fmt.Errorf("%s: %d results for %d statements; stderr: %s", c.Bin, len(results), len(sessionSettings)+len(stmts), stderr.String())
	}
	for i, r := range results[:len(sessionSettings)] {
		if r.Err != nil {
			return nil, fmt.Errorf("%s: %s: %v", c.Bin, sessionSettings[i], r.Err)
		}
	}
	return results[len(sessionSettings):], nil
}

// parseRecords reads chdb-run's output: per statement "OK <n>\n" or
// "ERR <n>\n" followed by n bytes.
func parseRecords(out []byte) ([]Result, error) {
	r := bufio.NewReader(bytes.NewReader(out))
	var results []Result
	for {
		header, err := r.ReadString('\n')
		if err == io.EOF && header == "" {
			return results, nil
		}
		if err != nil {
			return nil, fmt.Errorf("record %d: truncated header %q", len(results), header)
		}
		kind, size, ok := strings.Cut(strings.TrimSuffix(header, "\n"), " ")
		n, convErr := strconv.Atoi(size)
		if !ok || convErr != nil || n < 0 || (kind != "OK" && kind != "ERR") {
			return nil, fmt.Errorf("record %d: bad header %q", len(results), header)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("record %d: want %d bytes: %v", len(results), n, err)
		}
		if kind == "ERR" {
			results = append(results, Result{Err: errors.New(string(body))})
		} else {
			results = append(results, Result{Output: body})
		}
	}
}
