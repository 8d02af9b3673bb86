package auth

import (
	"errors"
	"flag"
	"log/slog"
)

// Config is what `auditlog serve` needs to authenticate callers.
type Config struct {
	// TokensFile is the JSON tokens file (see the package doc).
	TokensFile string
	// InsecureNoAuth serves without authentication: every caller sees
	// every scope. For local experiments only.
	InsecureNoAuth bool
	// Limits bound what one token may do.
	Limits LimitsConfig
}

// DefaultConfig has no tokens file: serve refuses to start until it is
// given one or --insecure-no-auth.
func DefaultConfig() Config { return Config{Limits: DefaultLimits()} }

// RegisterFlags binds the config to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TokensFile, "tokens-file", c.TokensFile, "JSON `file` of API tokens (name, sha256 of the token, scopes); reloaded on SIGHUP")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", c.InsecureNoAuth, "serve WITHOUT authentication: every caller sees every tenant's events (local experiments only)")
	fs.Float64Var(&c.Limits.RequestsPerSecond, "rate-limit", c.Limits.RequestsPerSecond, "requests per second allowed to each token (0: unlimited)")
	fs.IntVar(&c.Limits.Burst, "rate-burst", c.Limits.Burst, "requests a token may make at once above --rate-limit")
	fs.IntVar(&c.Limits.MaxStreamsPerToken, "max-streams-per-token", c.Limits.MaxStreamsPerToken, "concurrent streams and exports allowed to each token (0: unlimited)")
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.TokensFile == "" && !c.InsecureNoAuth:
		return errors.New("--tokens-file is required (or --insecure-no-auth to serve without authentication)")
	case c.TokensFile != "" && c.InsecureNoAuth:
		return errors.New("--tokens-file and --insecure-no-auth exclude each other")
	}
	return c.Limits.Validate()
}

// NewGuard loads the tokens and returns the guard of the API, with the
// stream cap applied to streamMethods. Without authentication it logs a
// warning that cannot be missed.
func (c Config) NewGuard(logger *slog.Logger, streamMethods ...string) (*Guard, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.InsecureNoAuth {
		logger.Warn("!!! AUTHENTICATION IS OFF (--insecure-no-auth): every caller can read every tenant's audit events. Never run like this outside a laptop.")
		return NewGuard(Insecure(), c.Limits, streamMethods...), nil
	}
	tokens, err := LoadTokens(c.TokensFile)
	if err != nil {
		return nil, err
	}
	logger.Info("API tokens loaded", "path", c.TokensFile, "tokens", tokens.Len())
	return NewGuard(tokens, c.Limits, streamMethods...), nil
}
