package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func writeTokens(t *testing.T, path string, tokens ...map[string]any) {
	t.Helper()
	data, err := json.Marshal(map[string]any{"tokens": tokens})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tokenEntry(name, token string, scopes ...string) map[string]any {
	return map[string]any{"name": name, "sha256": HashToken(token), "scopes": scopes}
}

func TestAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, tokenEntry("tenant-a", "secret-a", "org-a"), tokenEntry("admin", "secret-admin", "*"))
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := toks.Authenticate("Bearer secret-a")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "tenant-a" || p.All || !p.CanSee("org-a") || p.CanSee("org-b") || p.CanSee("") {
		t.Errorf("tenant-a principal = %+v", p)
	}
	admin, err := toks.Authenticate("bearer secret-admin")
	if err != nil {
		t.Fatal(err)
	}
	if !admin.All || admin.AllowedScopes() != nil || !admin.CanSee("") {
		t.Errorf("admin principal = %+v", admin)
	}
	for _, header := range []string{"", "secret-a", "Basic secret-a", "Bearer ", "Bearer secret-b"} {
		if _, err := toks.Authenticate(header); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", header, err)
		}
	}
}

func TestFromContextFailsClosed(t *testing.T) {
	p := FromContext(context.Background())
	if p.All || p.CanSee("org-a") || p.CanSee("") || p.AllowedScopes() == nil {
		t.Errorf("unauthenticated principal can see things: %+v", p)
	}
}

func TestLoadTokensErrorsNameTheEntry(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		`{"tokens":[{"name":"a","sha256":"xyz","scopes":["*"]}]}`:                                                                                  "sha256 must be 64 hex digits",
		`{"tokens":[{"name":"","sha256":"` + HashToken("x") + `","scopes":["*"]}]}`:                                                                "name is empty",
		`{"tokens":[{"name":"a","sha256":"` + HashToken("x") + `","scopes":[]}]}`:                                                                  "scopes is empty",
		`{"tokens":[{"name":"a","sha256":"` + HashToken("x") + `","scopes":["*"],"extra":1}]}`:                                                     "unknown field",
		`{"tokens":[{"name":"a","sha256":"` + HashToken("x") + `","scopes":["*"]},{"name":"a","sha256":"` + HashToken("y") + `","scopes":["*"]}]}`: "used twice",
	}
	for content, want := range cases {
		path := filepath.Join(dir, "t.json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTokens(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadTokens(%s) = %v, want an error containing %q", content, err, want)
		}
	}
}

func TestReloadOnSIGHUPRevokesToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, tokenEntry("a", "secret-a", "org-a"), tokenEntry("b", "secret-b", "org-b"))
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	toks.ReloadOnSIGHUP(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := toks.Authenticate("Bearer secret-b"); err != nil {
		t.Fatal(err)
	}
	writeTokens(t, path, tokenEntry("a", "secret-a", "org-a"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := toks.Authenticate("Bearer secret-b")
		if errors.Is(err, ErrUnauthenticated) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked token still accepted 5s after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := toks.Authenticate("Bearer secret-a"); err != nil {
		t.Errorf("kept token rejected after reload: %v", err)
	}
	// A broken file keeps the tokens in force.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := toks.Reload(); err == nil {
		t.Error("broken tokens file reloaded without error")
	}
	if _, err := toks.Authenticate("Bearer secret-a"); err != nil {
		t.Errorf("a failed reload dropped the tokens: %v", err)
	}
}

func TestGuardRateLimitAndStreamCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, tokenEntry("a", "secret-a", "org-a"))
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(toks, LimitsConfig{RequestsPerSecond: 1, Burst: 2, MaxStreamsPerToken: 1}, "/svc/Stream")
	for i := 0; i < 2; i++ {
		if _, err := g.Admit("Bearer secret-a"); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	_, err = g.Admit("Bearer secret-a")
	var lim *LimitError
	if !errors.As(err, &lim) || lim.RetryAfterSeconds() < 1 {
		t.Fatalf("third request = %v, want a LimitError with a retry hint", err)
	}

	// gRPC: unary over the rate gets RESOURCE_EXHAUSTED with retry-after.
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer secret-a"))
	_, err = g.UnaryInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/svc/Get"}, func(ctx context.Context, req any) (any, error) {
		return nil, nil
	})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("unary over the rate = %v, want RESOURCE_EXHAUSTED", err)
	}

	g = NewGuard(toks, LimitsConfig{MaxStreamsPerToken: 1}, "/svc/Stream")
	release, err := g.AcquireStream(&Principal{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	h := g.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !FromContext(r.Context()).CanSee("org-a") {
			t.Error("handler got no principal")
		}
		w.WriteHeader(http.StatusNoContent)
	}), true)
	do := func(header string) *http.Response {
		req := httptest.NewRequest("GET", "/v1/events:export", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	if res := do("Bearer secret-a"); res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Errorf("second concurrent export = %d (Retry-After %q), want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	release()
	if res := do("Bearer secret-a"); res.StatusCode != http.StatusNoContent {
		t.Errorf("export after release = %d, want 204", res.StatusCode)
	}
	for _, header := range []string{"", "Bearer nope", "secret-a"} {
		if res := do(header); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q = %d, want 401", header, res.StatusCode)
		}
	}
}

func TestPublicMethodsNeedNoToken(t *testing.T) {
	g := NewGuard(Insecure(), LimitsConfig{})
	toks := &Tokens{path: "/nonexistent"}
	g.tokens = toks
	called := false
	_, err := g.UnaryInterceptor()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}, func(ctx context.Context, req any) (any, error) {
		called = true
		return nil, nil
	})
	if err != nil || !called {
		t.Errorf("health check without a token: err=%v called=%v", err, called)
	}
	_, err = g.UnaryInterceptor()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/audit.v1.AuditService/ListEvents"}, func(ctx context.Context, req any) (any, error) {
		return nil, nil
	})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListEvents without a token = %v, want UNAUTHENTICATED", err)
	}
}
