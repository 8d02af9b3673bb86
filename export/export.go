package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/internal/apierr"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/selfaudit"
	"github.com/auditlog/auditlog/internal/store"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query/filter"
)

// Options are the collaborators of a Service.
type Options struct {
	// Registry receives the export metrics; nil registers none.
	Registry prometheus.Registerer
	// Logger logs failed exports; nil means slog.Default().
	Logger *slog.Logger
	// Audit records each export as an audit_log.events.export event; nil
	// records nothing.
	Audit *selfaudit.Recorder
}

// Service runs exports. It is safe for concurrent use.
type Service struct {
	cfg     Config
	conn    driver.Conn
	log     *slog.Logger
	slots   chan struct{}
	metrics *metrics
	audit   *selfaudit.Recorder
}

// New returns a Service reading from conn, whose default database holds the
// events table.
func New(cfg Config, conn driver.Conn, opts Options) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("export: no ClickHouse connection")
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		cfg:     cfg,
		conn:    conn,
		log:     log,
		slots:   make(chan struct{}, cfg.MaxConcurrent),
		metrics: m,
		audit:   opts.Audit,
	}, nil
}

// format is an output format.
type format int

const (
	formatCSV format = iota
	formatNDJSON
)

// plan is one export request, checked and ready to run.
type plan struct {
	filter  *filter.Filter
	format  format
	columns []column
	// flat is true when a column needs the flat copies of entity members.
	flat   bool
	asc    bool
	escape bool
	// scope names the download: the one scope it covers, or "all".
	scope string
	// id names the export in logs, in the X-Export-Id header and in
	// ClickHouse (the query_id of system.processes and the query log).
	id string
	// req is the request, recorded by the self-audit.
	req *auditv1.ExportEventsRequest
}

func (p *plan) contentType() string {
	if p.format == formatNDJSON {
		return "application/x-ndjson"
	}
	return "text/csv; charset=utf-8"
}

// filename is the download's name, e.g. auditlog-org-1-20260102T150405Z.csv.
func (p *plan) filename(now time.Time) string {
	ext := "csv"
	if p.format == formatNDJSON {
		ext = "ndjson"
	}
	return fmt.Sprintf("auditlog-%s-%s.%s", p.scope, now.UTC().Format("20060102T150405Z"), ext)
}

// unsafeFilename matches what may not appear in a file name taken from a
// scope id: anything but letters, digits, dot, underscore and dash.
var unsafeFilename = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// newPlan checks a request. Every error names the parameter at fault and
// maps to INVALID_ARGUMENT / HTTP 400 (internal/apierr).
func (s *Service) newPlan(ctx context.Context, req *auditv1.ExportEventsRequest) (*plan, error) {
	f, err := filter.Parse(req)
	if err != nil {
		return nil, err
	}
	// The tenant boundary comes from the authenticated caller only; a
	// request without one sees nothing (auth.FromContext fails closed).
	f.AllowedScopes = auth.FromContext(ctx).AllowedScopes()
	p := &plan{filter: f, escape: !req.GetNoFormulaEscape(), scope: "all", id: "export-" + uuid.NewString(), req: req}
	switch strings.ToLower(strings.TrimSpace(req.GetFormat())) {
	case "", "csv":
		p.format = formatCSV
	case "ndjson":
		p.format = formatNDJSON
	default:
		return nil, apierr.InvalidArgument("format", "%q is not a format; want csv or ndjson", req.GetFormat())
	}
	switch strings.ToLower(strings.TrimSpace(req.GetOrder())) {
	case "", "desc":
	case "asc":
		p.asc = true
	default:
		return nil, apierr.InvalidArgument("order", "%q is not an order; want desc or asc", req.GetOrder())
	}
	if p.columns, err = parseColumns(req.GetColumns()); err != nil {
		return nil, err
	}
	for _, c := range p.columns {
		p.flat = p.flat || c.flat
	}
	if p.format == formatNDJSON && len(req.GetColumns()) > 0 {
		return nil, apierr.InvalidArgument("columns", "applies to format=csv only; NDJSON lines always hold the whole event")
	}
	scopes := req.GetScopeId()
	if len(scopes) != 1 && len(f.AllowedScopes) == 1 {
		scopes = f.AllowedScopes
	}
	if len(scopes) == 1 {
		if name := strings.Trim(unsafeFilename.ReplaceAllString(scopes[0], "_"), "._"); name != "" {
			p.scope = name
		}
	}
	return p, nil
}

// query returns the SQL of a plan and its arguments.
func (p *plan) query() (string, []any) {
	where, args := p.filter.SQL()
	dir := "DESC"
	if p.asc {
		dir = "ASC"
	}
	// Copies of one event share (occurred_ns, id), so this order keeps them
	// adjacent and run drops repeats by looking at the previous row only.
	return "SELECT " + store.ExportSelect(p.flat) + " FROM events WHERE " + where +
		" ORDER BY occurred_ns " + dir + ", id " + dir, args
}

// sink is where the bytes of one export go: the HTTP response or the gRPC
// stream.
type sink interface {
	// start is called once ClickHouse accepted the query, just before the
	// first byte: up to here a failure is an ordinary error response.
	start() error
	// write sends one chunk; it must not keep p after returning.
	write(p []byte) error
}

// errBusy refuses an export when Config.MaxConcurrent are running.
var errBusy = errors.New("too many exports running")

// outcome is what an export did.
type outcome struct {
	// started is true once the first byte was handed to the sink: from then
	// on a failure can only be signalled inside the body.
	started bool
	rows    int64
	bytes   int64
}

// clientError marks a failure to write to the client, after which nothing
// more can reach it.
type clientError struct{ err error }

func (e *clientError) Error() string { return "writing to the client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// run executes a plan into out. On a failure after the first byte it writes
// the error marker (see the package doc) before returning the error; the
// caller then ends the transport in its own unmistakable way.
func (s *Service) run(ctx context.Context, p *plan, out sink) (res outcome, err error) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.metrics.refused.Inc()
		return res, errBusy
	}
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	formatName := "csv"
	if p.format == formatNDJSON {
		formatName = "ndjson"
	}
	defer func() {
		result := "complete"
		if err != nil {
			result = "failed"
		}
		s.metrics.exports.WithLabelValues(formatName, result).Inc()
		s.audit.Record(ctx, selfaudit.ActionExport, p.req, res.rows, err == nil,
			map[string]any{"format": formatName, "completed": err == nil})
	}()

	// The query gets its own context so that every way out of this function
	// cancels it before rows.Close, which otherwise reads the rest of the
	// result to drain the connection.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.log.With("export_id", p.id)
	sql, args := p.query()
	rows, err := s.conn.Query(clickhouse.Context(ctx,
		clickhouse.WithQueryID(p.id),
		clickhouse.WithSettings(s.settings())), sql, args...)
	if err != nil {
		return res, fmt.Errorf("export query: %w", err)
	}
	defer func() {
		cancel()
		_ = rows.Close()
	}()

	w := &writer{
		out:      out,
		flushAt:  s.cfg.FlushBytes,
		interval: s.cfg.FlushInterval,
		buf:      make([]byte, 0, s.cfg.FlushBytes+s.cfg.FlushBytes/4),
		metrics:  s.metrics,
	}
	// No write may outlive run: the sink is the caller's.
	defer func() { _ = w.wait() }()
	if err := out.start(); err != nil {
		return res, &clientError{err}
	}
	res.started = true
	enc := encoder{columns: p.columns, escape: p.escape}
	if p.format == formatCSV {
		w.buf = enc.appendHeader(w.buf)
	}
	// The header row goes out at once: the download starts while
	// ClickHouse is still sorting.
	err = w.flush()

	// This goroutine reads rows (clickhouse-go decodes blocks in another)
	// and a renderer turns them into bytes; the rows travel in batches.
	var (
		scanner = store.NewExportScanner(p.flat)
		prev    uuid.UUID
		dups    int64
		r       = newRenderer(w, &enc, p.format)
		b       = <-r.free
	)
	go r.run()
	for err == nil && rows.Next() {
		e, serr := scanner.ScanInto(rows, &b.rows[b.n])
		if serr != nil {
			err = serr
			break
		}
		if e.ID == prev {
			dups++
			continue
		}
		prev = e.ID
		if b.n++; b.n == len(b.rows) {
			if b = r.send(b); b == nil {
				break
			}
		}
	}
	if err == nil {
		err = rows.Err()
	}
	if b != nil && b.n > 0 && err == nil {
		r.send(b)
	}
	if rerr := r.close(); err == nil {
		err = rerr
	}
	if err == nil {
		err = w.flush()
	}
	if werr := w.wait(); err == nil {
		err = werr
	}
	s.metrics.duplicates.Add(float64(dups))
	res.rows, res.bytes = w.rows, w.total
	if err == nil {
		return res, nil
	}

	var ce *clientError
	if !errors.As(err, &ce) && ctx.Err() == nil {
		// The client is still there: tell it, inside the body.
		// Rows rendered before the failure go out first, then the marker.
		st := status.Convert(s.toStatus(ctx, err))
		if p.format == formatCSV {
			w.buf = enc.appendErrorRow(w.buf, w.rows, st.Message())
		} else {
			w.buf = appendErrorLine(w.buf, w.rows, st)
		}
		_ = w.flush()
		_ = w.wait()
	}
	if errors.As(err, &ce) || ctx.Err() != nil {
		log.Info("export abandoned by the client", "rows", w.rows, "bytes", w.total, "error", err)
	} else {
		log.Warn("export failed", "rows", w.rows, "bytes", w.total, "error", err)
	}
	return res, err
}

// settings are the ClickHouse settings of an export query. ClickHouse
// 18.16 takes settings as integers only (clickhouse-go encodes them so for
// old servers); the overflow modes already default to "throw".
func (s *Service) settings() clickhouse.Settings {
	set := clickhouse.Settings{"max_block_size": s.cfg.BlockRows}
	if s.cfg.MaxExecutionTime > 0 {
		set["max_execution_time"] = int(s.cfg.MaxExecutionTime / time.Second)
	}
	if s.cfg.MaxRows > 0 {
		set["max_result_rows"] = int(s.cfg.MaxRows)
	}
	if s.cfg.ExternalSortBytes > 0 {
		set["max_bytes_before_external_sort"] = int(s.cfg.ExternalSortBytes)
	}
	return set
}

// renderer renders the rows the reader scanned into w, in a goroutine of
// its own: reading (Scan allocates and boxes every cell) and rendering each
// cost about as much, and in turn they took one core while the other had
// room.
type renderer struct {
	w       *writer
	enc     *encoder
	format  format
	batches chan *rowBatch
	free    chan *rowBatch
	// stopped is closed when rendering failed (the client is gone); done
	// when the renderer returned, err set.
	stopped chan struct{}
	done    chan struct{}
	err     error
}

// rowBatch is a run of scanned rows.
type rowBatch struct {
	rows []store.ExportRow
	n    int
}

// renderBatches is how many batches of renderBatchRows exist per export:
// one being read into, one being rendered, one waiting.
const renderBatches, renderBatchRows = 3, 256

func newRenderer(w *writer, enc *encoder, f format) *renderer {
	r := &renderer{w: w, enc: enc, format: f, batches: make(chan *rowBatch, renderBatches),
		free: make(chan *rowBatch, renderBatches), stopped: make(chan struct{}), done: make(chan struct{})}
	for range renderBatches {
		r.free <- &rowBatch{rows: make([]store.ExportRow, renderBatchRows)}
	}
	return r
}

func (r *renderer) run() {
	defer close(r.done)
	for b := range r.batches {
		for i := 0; i < b.n && r.err == nil; i++ {
			e := &b.rows[i].Event
			if r.format == formatCSV {
				r.w.buf = r.enc.appendCSV(r.w.buf, e)
			} else {
				r.w.buf = append(e.AppendJSON(r.w.buf), '\n')
			}
			r.w.rows++
			if r.err = r.w.maybeFlush(); r.err != nil {
				close(r.stopped)
			}
		}
		b.n = 0
		r.free <- b
	}
}

// send hands a full batch to the renderer and returns an empty one, or nil
// when the renderer stopped.
func (r *renderer) send(b *rowBatch) *rowBatch {
	select {
	case r.batches <- b:
	case <-r.stopped:
		return nil
	}
	select {
	case b = <-r.free:
		return b
	case <-r.stopped:
		return nil
	}
}

// close waits for the renderer to render what it was sent; the writer is
// the caller's again after it.
func (r *renderer) close() error {
	close(r.batches)
	<-r.done
	return r.err
}

// writer gathers rendered rows and hands them to the sink in chunks. A
// chunk is written by a goroutine of its own while the next one is
// rendered (double buffering): writing to the socket (and, with gzip,
// compressing) then overlaps reading and rendering instead of stalling them.
type writer struct {
	out       sink
	buf       []byte
	spare     []byte
	flushAt   int
	interval  time.Duration
	lastFlush time.Time
	// rows counts the rows rendered, sentRows those in the chunks handed to
	// the sink, total the bytes written.
	rows     int64
	sentRows int64
	total    int64
	metrics  *metrics
	// written delivers the result of the chunk being written; nil when
	// none is.
	written chan error
	pending int
}

// maybeFlush writes the buffer out when it is full or has waited long
// enough.
func (w *writer) maybeFlush() error {
	if len(w.buf) < w.flushAt && time.Since(w.lastFlush) < w.interval {
		return nil
	}
	return w.flush()
}

// flush hands the buffer to the sink, once the chunk before is written.
func (w *writer) flush() error {
	w.lastFlush = time.Now()
	if err := w.wait(); err != nil {
		return err
	}
	if len(w.buf) == 0 {
		return nil
	}
	if w.spare == nil {
		w.spare = make([]byte, 0, cap(w.buf))
	}
	// The chunk being written becomes the spare once written (see wait).
	chunk := w.buf
	w.buf, w.spare = w.spare[:0], chunk
	w.pending = len(chunk)
	w.metrics.rows.Add(float64(w.rows - w.sentRows))
	w.sentRows = w.rows
	written := make(chan error, 1)
	w.written = written
	go func() {
		written <- w.out.write(chunk)
	}()
	return nil
}

// wait waits until the chunk being written, if any, is written. It must be
// called before the sink is used otherwise or the export returns.
func (w *writer) wait() error {
	if w.written == nil {
		return nil
	}
	err := <-w.written
	w.written = nil
	if err != nil {
		return &clientError{err}
	}
	w.total += int64(w.pending)
	w.metrics.bytes.Add(float64(w.pending))
	return nil
}

// chTooManyRows is ClickHouse's TOO_MANY_ROWS_OR_BYTES, raised by
// max_result_rows (Config.MaxRows).
const chTooManyRows = 396

// toStatus maps an export error to the gRPC status the client gets.
func (s *Service) toStatus(ctx context.Context, err error) error {
	var chErr *proto.Exception
	if errors.As(err, &chErr) && chErr.Code == chTooManyRows && s.cfg.MaxRows > 0 {
		return status.Errorf(codes.ResourceExhausted, "the export has more than %d rows, the most this server allows (--export-max-rows); narrow the filters", s.cfg.MaxRows)
	}
	if errors.Is(err, errBusy) {
		err = apierr.Exhausted("%d exports are running, the most this server allows; retry in %s", s.cfg.MaxConcurrent, s.cfg.RetryAfter)
	}
	return apierr.ToStatus(ctx, err)
}
