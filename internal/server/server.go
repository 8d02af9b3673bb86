package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/proto/openapi"
	"github.com/auditlog/auditlog/query"
)

// maxMessageBytes bounds gRPC messages between the gateway and the gRPC
// server: a page of 1000 events with large payloads fits.
const maxMessageBytes = 64 << 20

// Requests are small (filters and a phrase): anything bigger is refused
// before it is parsed. maxRequestBytes bounds a gRPC request message and
// maxHeaderBytes the HTTP request line and headers, where a REST call's
// parameters travel.
const (
	maxRequestBytes = 256 << 10
	maxHeaderBytes  = 64 << 10
)

// Server is the wired API, ready to Run.
type Server struct {
	cfg      Config
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	http     *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener
	innerLis net.Listener // loopback listener the gateway dials
	gwConn   *grpc.ClientConn
}

// api is the full AuditService: the read RPCs of package query plus
// ExportEvents.
type api struct {
	*query.Service
	exporter Exporter
}

func (a api) ExportEvents(req *auditv1.ExportEventsRequest, stream auditv1.AuditService_ExportEventsServer) error {
	if a.exporter == nil {
		return status.Error(codes.Unimplemented, "export is not configured on this server")
	}
	return a.exporter.ExportEvents(req, stream)
}

// New validates cfg, binds the listeners and wires gRPC, the gateway and the
// HTTP routes. Nothing is served until Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log}
	m := newMetrics()
	if err := m.register(cfg.Registry); err != nil {
		return nil, err
	}

	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(m.unary, cfg.Guard.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(m.stream, cfg.Guard.StreamInterceptor()),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.MaxRecvMsgSize(maxRequestBytes),
	)
	auditv1.RegisterAuditServiceServer(s.grpc, api{Service: cfg.Query, exporter: cfg.Exporter})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	var err error
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("--grpc-addr: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	if cfg.TLSCertFile != "" {
		cert, cerr := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if cerr != nil {
			err = fmt.Errorf("--tls-cert-file/--tls-key-file: %w", cerr)
			return nil, err
		}
		// The public listeners speak TLS; the gateway's loopback
		// connection to gRPC stays inside the process's host.
		s.grpcLis = tls.NewListener(s.grpcLis, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
		s.httpLis = tls.NewListener(s.httpLis, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	}
	if s.innerLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("gateway loopback listener: %w", err)
	}
	s.gwConn, err = grpc.NewClient(s.innerLis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("gateway client: %w", err)
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newRESTMarshaler()),
		// A refused call carries a retry-after header (internal/auth);
		// REST clients get it as the standard Retry-After.
		runtime.WithOutgoingHeaderMatcher(func(key string) (string, bool) {
			if key == "retry-after" {
				return "Retry-After", true
			}
			return runtime.MetadataHeaderPrefix + key, true
		}),
	)
	if err = auditv1.RegisterAuditServiceHandlerClient(context.Background(), gw, auditv1.NewAuditServiceClient(s.gwConn)); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.JSON)
	})
	if cfg.Exporter != nil {
		h := cfg.Guard.HTTPMiddleware(cfg.Exporter, true)
		mux.Handle("GET /v1/events:export", m.http("ExportEvents", h))
	}
	mux.Handle("/", strictParams(gw, gw))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: maxHeaderBytes}
	return s, nil
}

// GRPCAddr returns the address gRPC listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr returns the address HTTP listens on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: clickhouse unreachable")
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

// Run serves until ctx ends, then shuts down in order: health NOT_SERVING,
// gRPC GracefulStop (Stop after ShutdownTimeout), HTTP Shutdown. It returns
// the first serving error, or nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(auditv1.AuditService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveGRPC(s.grpc, s.grpcLis) })
	g.Go(func() error { return serveGRPC(s.grpc, s.innerLis) })
	g.Go(func() error {
		if err := s.http.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	s.log.Info("serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr())
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown()
		return nil
	})
	return g.Wait()
}

func serveGRPC(srv *grpc.Server, lis net.Listener) error {
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc: %w", err)
	}
	return nil
}

func (s *Server) shutdown() {
	s.log.Info("shutting down")
	// Load balancers stop sending new calls first.
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(s.cfg.ShutdownTimeout)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		s.log.Warn("graceful gRPC stop timed out; cutting remaining calls", "timeout", s.cfg.ShutdownTimeout)
		s.grpc.Stop() // following streams never end on their own
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("http shutdown", "err", err)
		_ = s.http.Close()
	}
	_ = s.gwConn.Close()
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.innerLis} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// metrics measures every call once, at the gRPC boundary (REST calls reach
// it through the gateway), plus the raw export download.
type metrics struct {
	latency *prometheus.HistogramVec
}

func newMetrics() metrics {
	return metrics{latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "auditlog_api_request_duration_seconds",
		Help:    "Duration of API calls by RPC and status code (streams: until they end).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"rpc", "code"})}
}

func (m metrics) register(r prometheus.Registerer) error { return r.Register(m.latency) }

func (m metrics) observe(method string, start time.Time, err error) {
	m.latency.WithLabelValues(shortMethod(method), status.Code(err).String()).Observe(time.Since(start).Seconds())
}

func (m metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// http measures a plain HTTP handler, labelling the code with the HTTP
// status.
func (m metrics) http(rpc string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		m.latency.WithLabelValues(rpc, "HTTP_"+strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach Flush of the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// Flush passes flushes through for handlers that assert http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
