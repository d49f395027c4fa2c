package config

import (
	"fmt"
	"net"
	"time"
)

// HTTP is the server for the API, the dashboard, /metrics and the health endpoints.
type HTTP struct {
	// Listen is the address to listen on (host:port; port 0 picks a free one).
	Listen string `yaml:"listen"`
	// ExternalURL is how people reach flagwarden; alert links point here.
	ExternalURL string `yaml:"external_url"`
	// ReadHeaderTimeout bounds reading request headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// HandlerTimeout bounds one API request.
	HandlerTimeout time.Duration `yaml:"handler_timeout"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxConcurrent bounds API requests in flight; past it the API answers 503.
	MaxConcurrent int `yaml:"max_concurrent"`
	// CacheTTL is how long answers of the findings and team-list endpoints may be reused
	// before they are computed again; 0 computes every answer afresh.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

func defaultHTTP() HTTP {
	return HTTP{
		Listen:            "127.0.0.1:8080",
		ReadHeaderTimeout: 10 * time.Second,
		HandlerTimeout:    30 * time.Second,
		MaxBodyBytes:      1 << 20,
		MaxConcurrent:     256,
		CacheTTL:          time.Second,
	}
}

func (h HTTP) validate(p *problems) {
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		p.add("http.listen", "must be host:port, got %q", h.Listen)
	}
	if h.ExternalURL != "" {
		checkURL(p, "http.external_url", h.ExternalURL, "http", "https")
	}
	p.positive("http.read_header_timeout", h.ReadHeaderTimeout)
	p.positive("http.handler_timeout", h.HandlerTimeout)
	p.atLeast("http.max_body_bytes", h.MaxBodyBytes, 1)
	p.atLeast("http.max_concurrent", int64(h.MaxConcurrent), 1)
	if h.CacheTTL < 0 || h.CacheTTL > time.Minute {
		p.add("http.cache_ttl", "must be from 0 to 1m, got %s", h.CacheTTL)
	}
}

// Role is what a token may do.
type Role string

// Roles: read sees everything; operate also requests rebuilds and quarantines teams.
const (
	RoleRead    Role = "read"
	RoleOperate Role = "operate"
)

// Auth holds the API's bearer tokens.
type Auth struct {
	// OpenReads lets requests without a token read (writes always need operate).
	OpenReads bool `yaml:"open_reads"`
	// Tokens are the accepted bearer tokens.
	Tokens []Token `yaml:"tokens"`
}

// Token is one bearer token and its role.
type Token struct {
	// Name identifies the token in logs (the token itself is never logged).
	Name string `yaml:"name"`
	// Token is the secret value.
	Token Secret `yaml:"token"`
	// Role is read or operate.
	Role Role `yaml:"role"`
}

func (a Auth) validate(p *problems) {
	seen := map[string]bool{}
	for i, t := range a.Tokens {
		f := fieldIndex("auth.tokens", i)
		p.required(f+".name", t.Name)
		if len(t.Token) < 16 {
			p.add(f+".token", "must be at least 16 characters")
		}
		p.oneOf(f+".role", string(t.Role), string(RoleRead), string(RoleOperate))
		if seen[string(t.Token)] && t.Token != "" {
			p.add(f+".token", "is the same as another token")
		}
		seen[string(t.Token)] = true
	}
}

func fieldIndex(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
