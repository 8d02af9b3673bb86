package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// AllScopes in a token's scopes grants every scope, and events without one.
const AllScopes = "*"

// Principal is an authenticated caller.
type Principal struct {
	// Name of the token, used as the actor of self-audit events.
	Name string
	// Scopes the caller may see; ignored when All is true.
	Scopes []string
	// All is true for tokens with the scope "*".
	All bool
}

// AllowedScopes returns the scopes to AND into a query: nil means every
// scope (and events without one); otherwise only events whose scope id is in
// the list, never events without a scope.
func (p *Principal) AllowedScopes() []string {
	if p.All {
		return nil
	}
	return p.Scopes
}

// CanSee reports whether the caller may see an event of scope scopeID ("" for
// an event without a scope).
func (p *Principal) CanSee(scopeID string) bool {
	return p.All || (scopeID != "" && slices.Contains(p.Scopes, scopeID))
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the caller of a request, or a Principal that may see
// nothing when the request was not authenticated: callers fail closed.
func FromContext(ctx context.Context) *Principal {
	if p, ok := ctx.Value(ctxKey{}).(*Principal); ok && p != nil {
		return p
	}
	return &Principal{Name: "unauthenticated", Scopes: []string{}}
}

// ErrUnauthenticated is returned for a missing, malformed or unknown token.
var ErrUnauthenticated = errors.New("unauthenticated")

// Tokens checks bearer tokens against a tokens file.
type Tokens struct {
	path     string
	insecure bool

	mu      sync.RWMutex
	entries []entry
}

type entry struct {
	hash      [sha256.Size]byte
	principal *Principal
}

// tokensFile is the JSON layout of the tokens file.
type tokensFile struct {
	Tokens []struct {
		Name   string   `json:"name"`
		SHA256 string   `json:"sha256"`
		Scopes []string `json:"scopes"`
	} `json:"tokens"`
}

// LoadTokens reads the tokens file at path.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Insecure returns a Tokens that lets every request through as an
// all-scopes principal named "anonymous". For --insecure-no-auth only.
func Insecure() *Tokens { return &Tokens{insecure: true} }

// IsInsecure reports whether authentication is off.
func (t *Tokens) IsInsecure() bool { return t.insecure }

// Reload re-reads the tokens file. On error the previous tokens stay in
// force.
func (t *Tokens) Reload() error {
	if t.insecure {
		return nil
	}
	entries, err := parseTokensFile(t.path)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.entries = entries
	t.mu.Unlock()
	return nil
}

// Len returns how many tokens are loaded.
func (t *Tokens) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

func parseTokensFile(path string) ([]entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	var f tokensFile
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	var entries []entry
	names := map[string]bool{}
	for i, tok := range f.Tokens {
		where := fmt.Sprintf("tokens file %s: tokens[%d]", path, i)
		if tok.Name == "" {
			return nil, fmt.Errorf("%s: name is empty", where)
		}
		if names[tok.Name] {
			return nil, fmt.Errorf("%s: name %q is used twice", where, tok.Name)
		}
		names[tok.Name] = true
		raw, err := hex.DecodeString(tok.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%s (%s): sha256 must be 64 hex digits (sha256sum of the token)", where, tok.Name)
		}
		if len(tok.Scopes) == 0 {
			return nil, fmt.Errorf("%s (%s): scopes is empty; use [\"*\"] for every scope", where, tok.Name)
		}
		p := &Principal{Name: tok.Name}
		for _, s := range tok.Scopes {
			switch {
			case s == AllScopes:
				p.All = true
			case s == "":
				return nil, fmt.Errorf("%s (%s): empty scope", where, tok.Name)
			default:
				p.Scopes = append(p.Scopes, s)
			}
		}
		var e entry
		copy(e.hash[:], raw)
		e.principal = p
		entries = append(entries, e)
	}
	return entries, nil
}

// Authenticate checks the value of an Authorization header.
func (t *Tokens) Authenticate(header string) (*Principal, error) {
	if t.insecure {
		return &Principal{Name: "anonymous", All: true}, nil
	}
	if header == "" {
		return nil, fmt.Errorf("%w: missing Authorization: Bearer <token>", ErrUnauthenticated)
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, fmt.Errorf("%w: malformed Authorization header, want \"Bearer <token>\"", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	t.mu.RLock()
	defer t.mu.RUnlock()
	var found *Principal
	// Compare against every entry so the time taken does not depend on
	// which entry, if any, matched.
	for i := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:]) == 1 {
			found = t.entries[i].principal
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	return found, nil
}

// HashToken returns the hex SHA-256 of a token, as the tokens file wants it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ReloadOnSIGHUP reloads the tokens file each time the process gets SIGHUP,
// until ctx is done. A reload that fails keeps the tokens in force and logs
// why.
func (t *Tokens) ReloadOnSIGHUP(ctx context.Context, logger *slog.Logger) {
	if t.insecure {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := t.Reload(); err != nil {
					logger.Error("tokens reload failed; previous tokens stay in force", "path", t.path, "err", err)
					continue
				}
				logger.Info("tokens reloaded", "path", t.path, "tokens", t.Len())
			}
		}
	}()
}
