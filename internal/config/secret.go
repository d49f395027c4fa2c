package config

import (
	"net/url"
	"strings"
)

// redacted is what every secret prints as, in logs, in `check-config` output and in
// the YAML that Config.String renders.
const redacted = "<secret>"

// Secret is a value that must never be printed: an API token or a password.
type Secret string

// String implements fmt.Stringer so that %v and %s never leak the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from leaking the value too.
func (s Secret) GoString() string { return s.String() }

// MarshalYAML renders the secret redacted.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON renders the secret redacted.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// Value returns the real value, for the one place that needs it.
func (s Secret) Value() string { return string(s) }

// URL is a connection URL whose password (if any) must never be printed.
type URL string

// String prints the URL with its password replaced by <secret>.
func (u URL) String() string { return RedactURL(string(u)) }

// GoString keeps %#v from leaking the password.
func (u URL) GoString() string { return u.String() }

// MarshalYAML renders the URL redacted.
func (u URL) MarshalYAML() (any, error) { return u.String(), nil }

// MarshalJSON renders the URL redacted.
func (u URL) MarshalJSON() ([]byte, error) { return []byte(`"` + u.String() + `"`), nil }

// Value returns the URL with its password, for the client that connects.
func (u URL) Value() string { return string(u) }

// RedactURL replaces the password of a URL with <secret>. A string that does not parse
// as a URL is redacted whole rather than risk printing a password embedded in it.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "SECRETPLACEHOLDER")
		}
	}
	q := u.Query()
	changed := false
	for _, k := range []string{"password", "token", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "SECRETPLACEHOLDER")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	s := u.String()
	return strings.ReplaceAll(s, "SECRETPLACEHOLDER", redacted)
}
