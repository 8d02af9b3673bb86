package sqlcheck

import (
	"context"
	"log/slog"
	"sync"
)

// Capture records the query text clickhouse-go sends to the server, after it
// has bound the arguments into it: the driver logs every query at debug
// level ("sending query", attribute "query") on the Logger of its Options.
// Use one Capture per connection; Last is meaningful with one query at a
// time, All with any number.
type Capture struct {
	mu      sync.Mutex
	queries []string
}

// Logger returns a logger to set as clickhouse.Options.Logger.
func (c *Capture) Logger() *slog.Logger {
	return slog.New(captureHandler{c})
}

// Last returns the text of the last query sent, or "" if none was.
func (c *Capture) Last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queries) == 0 {
		return ""
	}
	return c.queries[len(c.queries)-1]
}

// All returns the text of every query sent, in the order they were sent.
func (c *Capture) All() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...)
}

// captureHandler keeps the "query" attribute of "sending query" records and
// drops every other record.
type captureHandler struct{ c *Capture }

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "sending query" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "query" {
			h.c.mu.Lock()
			h.c.queries = append(h.c.queries, a.Value.String())
			h.c.mu.Unlock()
			return false
		}
		return true
	})
	return nil
}

// The driver adds connection attributes to its logger; they do not matter
// here, and keeping the same handler keeps the records in one place.
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }
