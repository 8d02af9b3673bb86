package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// LimitsConfig bounds what one token may do.
type LimitsConfig struct {
	// RequestsPerSecond is each token's sustained request rate; 0 disables
	// rate limiting.
	RequestsPerSecond float64
	// Burst is how many requests a token may make at once above the rate.
	Burst int
	// MaxStreamsPerToken caps a token's concurrent long-lived calls (SIEM
	// streams and exports); 0 means no cap.
	MaxStreamsPerToken int
}

// DefaultLimits are generous enough for a SIEM and a few analysts per token.
func DefaultLimits() LimitsConfig {
	return LimitsConfig{RequestsPerSecond: 20, Burst: 40, MaxStreamsPerToken: 4}
}

// Validate names the first invalid field.
func (c LimitsConfig) Validate() error {
	switch {
	case c.RequestsPerSecond < 0:
		return errors.New("--rate-limit must not be negative")
	case c.RequestsPerSecond > 0 && c.Burst < 1:
		return errors.New("--rate-burst must be at least 1 when --rate-limit is set")
	case c.MaxStreamsPerToken < 0:
		return errors.New("--max-streams-per-token must not be negative")
	}
	return nil
}

// ErrLimited is returned when a token is over its rate or stream cap.
var ErrLimited = errors.New("limit exceeded")

// LimitError is ErrLimited with the time after which a retry may succeed.
type LimitError struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrLimited) true.
func (e *LimitError) Unwrap() error { return ErrLimited }

// RetryAfterSeconds is the Retry-After value: whole seconds, at least 1.
func (e *LimitError) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// Guard authenticates calls and applies per-token limits.
type Guard struct {
	tokens *Tokens
	limits LimitsConfig
	// streamMethods are the full gRPC method names counted against
	// MaxStreamsPerToken.
	streamMethods map[string]bool
	// public are the gRPC method prefixes that need no token.
	public []string

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	streams  map[string]int
}

// NewGuard returns a Guard; streamMethods are the long-lived gRPC methods
// (e.g. "/audit.v1.AuditService/StreamEvents").
func NewGuard(tokens *Tokens, limits LimitsConfig, streamMethods ...string) *Guard {
	g := &Guard{
		tokens:        tokens,
		limits:        limits,
		streamMethods: map[string]bool{},
		public:        []string{"/grpc.health.v1.Health/", "/grpc.reflection."},
		limiters:      map[string]*rate.Limiter{},
		streams:       map[string]int{},
	}
	for _, m := range streamMethods {
		g.streamMethods[m] = true
	}
	return g
}

// Tokens returns the token set the guard checks against.
func (g *Guard) Tokens() *Tokens { return g.tokens }

// Admit authenticates the Authorization header value and charges one
// request to the token's rate. It returns an ErrUnauthenticated or a
// *LimitError.
func (g *Guard) Admit(authorization string) (*Principal, error) {
	p, err := g.tokens.Authenticate(authorization)
	if err != nil {
		return nil, err
	}
	if g.limits.RequestsPerSecond > 0 {
		lim := g.limiter(p.Name)
		r := lim.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return nil, &LimitError{Reason: fmt.Sprintf("token %q is over its rate of %g requests/s", p.Name, g.limits.RequestsPerSecond), RetryAfter: d}
		}
	}
	return p, nil
}

func (g *Guard) limiter(name string) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	lim, ok := g.limiters[name]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(g.limits.RequestsPerSecond), g.limits.Burst)
		g.limiters[name] = lim
	}
	return lim
}

// AcquireStream takes one of the token's concurrent stream slots; call the
// returned release when the stream ends.
func (g *Guard) AcquireStream(p *Principal) (release func(), err error) {
	if g.limits.MaxStreamsPerToken == 0 {
		return func() {}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.streams[p.Name] >= g.limits.MaxStreamsPerToken {
		return nil, &LimitError{
			Reason:     fmt.Sprintf("token %q already has %d streams or exports open (the limit)", p.Name, g.limits.MaxStreamsPerToken),
			RetryAfter: 5 * time.Second,
		}
	}
	g.streams[p.Name]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.streams[p.Name]--
			g.mu.Unlock()
		})
	}, nil
}

func (g *Guard) isPublic(method string) bool {
	for _, prefix := range g.public {
		if strings.HasPrefix(method, prefix) {
			return true
		}
	}
	return false
}

// grpcAdmit authenticates a gRPC call from its metadata.
func (g *Guard) grpcAdmit(ctx context.Context) (*Principal, error) {
	var header string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			header = v[0]
		}
	}
	p, err := g.Admit(header)
	if err != nil {
		return nil, grpcError(ctx, err)
	}
	return p, nil
}

// grpcError turns Admit's errors into statuses; a limit sets the
// retry-after response header, which the REST gateway forwards as
// Retry-After.
func grpcError(ctx context.Context, err error) error {
	var lim *LimitError
	if errors.As(err, &lim) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(lim.RetryAfterSeconds())))
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Unauthenticated, err.Error())
}

// UnaryInterceptor authenticates unary calls.
func (g *Guard) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if g.isPublic(info.FullMethod) {
			return handler(ctx, req)
		}
		p, err := g.grpcAdmit(ctx)
		if err != nil {
			return nil, err
		}
		return handler(NewContext(ctx, p), req)
	}
}

// StreamInterceptor authenticates streaming calls and applies the per-token
// cap on concurrent streams.
func (g *Guard) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if g.isPublic(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		p, err := g.grpcAdmit(ctx)
		if err != nil {
			return err
		}
		if g.streamMethods[info.FullMethod] {
			release, err := g.AcquireStream(p)
			if err != nil {
				return grpcError(ctx, err)
			}
			defer release()
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: NewContext(ctx, p)})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// HTTPMiddleware authenticates a plain HTTP handler (the raw export
// download) the way the interceptors do gRPC calls; stream says whether the
// request counts against the per-token stream cap.
func (g *Guard) HTTPMiddleware(next http.Handler, stream bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.Admit(r.Header.Get("Authorization"))
		if err == nil && stream {
			var release func()
			if release, err = g.AcquireStream(p); err == nil {
				defer release()
			}
		}
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// writeHTTPError answers like the gateway's error handler does: a JSON
// google.rpc.Status body.
func writeHTTPError(w http.ResponseWriter, err error) {
	code, httpStatus := codes.Unauthenticated, http.StatusUnauthorized
	var lim *LimitError
	if errors.As(err, &lim) {
		code, httpStatus = codes.ResourceExhausted, http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(lim.RetryAfterSeconds()))
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="auditlog"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": int(code), "message": err.Error(), "details": []any{}})
}
