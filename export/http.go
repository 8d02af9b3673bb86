package export

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"github.com/klauspost/compress/gzip"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// Trailer names of a REST export; see the package doc.
const (
	// TrailerStatus is "complete" at the end of a complete export. A failed
	// export has no trailers at all: its body is aborted.
	TrailerStatus = "X-Export-Status"
	// TrailerRows is the number of events in a complete export.
	TrailerRows = "X-Export-Rows"
)

// noPathParams: every field of the request comes from the query string.
var noPathParams = utilities.NewDoubleArray(nil)

// ServeHTTP serves GET /v1/events:export: the query parameters of ListEvents
// plus format, columns, order and no_formula_escape, answered with a raw CSV
// or NDJSON body (not grpc-gateway's JSON stream), gzip-compressed when the
// client accepts it.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeHTTPError(w, status.Error(codes.Unimplemented, r.Method+" is not allowed; use GET"), http.StatusMethodNotAllowed)
		return
	}
	req := &auditv1.ExportEventsRequest{}
	// The same parser as the gateway's, over the generated message, so the
	// parameter names are the proto's and cannot drift from ListEvents.
	if err := runtime.PopulateQueryParameters(req, r.URL.Query(), noPathParams); err != nil {
		writeHTTPError(w, status.Error(codes.InvalidArgument, err.Error()), 0)
		return
	}
	p, err := s.newPlan(ctx, req)
	if err != nil {
		writeHTTPError(w, s.toStatus(ctx, err), 0)
		return
	}
	out := &httpSink{w: w, rc: http.NewResponseController(w), plan: p}
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		out.gzipLevel = s.cfg.GzipLevel
	}
	res, err := s.run(ctx, p, out)
	switch {
	case err == nil:
		if err := out.close(); err != nil {
			panic(http.ErrAbortHandler) // the client went away at the very end
		}
		w.Header().Set(TrailerStatus, "complete")
		w.Header().Set(TrailerRows, strconv.FormatInt(res.rows, 10))
	case !res.started:
		if errors.Is(err, errBusy) {
			w.Header().Set("Retry-After", strconv.Itoa(int((s.cfg.RetryAfter+time.Second-1)/time.Second)))
		}
		writeHTTPError(w, s.toStatus(ctx, err), 0)
	default:
		// run wrote the error marker; now make the body end badly so that
		// no client can take it for a complete file: no terminating chunk,
		// no trailers, an unexpected EOF on the client's side.
		panic(http.ErrAbortHandler)
	}
}

// writeHTTPError answers with {"code": <gRPC code>, "message": ...}, the
// shape of grpc-gateway's errors, and the HTTP status of the gRPC code
// (httpStatus overrides it when not 0).
func writeHTTPError(w http.ResponseWriter, err error, httpStatus int) {
	st := status.Convert(err)
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
	}
	body, _ := json.Marshal(struct {
		Code    int32  `json:"code"`
		Message string `json:"message"`
	}{int32(st.Code()), st.Message()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(append(body, '\n'))
}

// httpSink writes an export to an HTTP response, flushing every chunk.
type httpSink struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	plan      *plan
	gzipLevel int // 0: no compression
	gz        *gzip.Writer
}

func (s *httpSink) start() error {
	h := s.w.Header()
	h.Set("Content-Type", s.plan.contentType())
	h.Set("Content-Disposition", `attachment; filename="`+s.plan.filename(time.Now())+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Export-Id", s.plan.id)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", TrailerStatus+", "+TrailerRows)
	h.Add("Vary", "Accept-Encoding")
	if s.gzipLevel != 0 {
		h.Set("Content-Encoding", "gzip")
		gz, err := gzip.NewWriterLevel(s.w, s.gzipLevel)
		if err != nil {
			return err
		}
		s.gz = gz
	}
	s.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *httpSink) write(p []byte) error {
	if s.gz != nil {
		if _, err := s.gz.Write(p); err != nil {
			return err
		}
		// A sync flush ends the deflate block, so the client can decompress
		// every row sent so far.
		if err := s.gz.Flush(); err != nil {
			return err
		}
	} else if _, err := s.w.Write(p); err != nil {
		return err
	}
	return s.rc.Flush()
}

// close ends the gzip stream of a complete export.
func (s *httpSink) close() error {
	if s.gz == nil {
		return nil
	}
	if err := s.gz.Close(); err != nil {
		return err
	}
	return s.rc.Flush()
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" {
			continue
		}
		params = strings.ReplaceAll(strings.ToLower(params), " ", "")
		if q, ok := strings.CutPrefix(params, "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				return false
			}
		}
		return true
	}
	return false
}
