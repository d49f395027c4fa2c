package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable that overrides a config key. The key's
// YAML path, upper-cased with dots as underscores, follows: broker.url is
// FLAGWARDEN_BROKER_URL.
const EnvPrefix = "FLAGWARDEN_"

// reservedEnv are FLAGWARDEN_ variables that are not config keys.
var reservedEnv = map[string]bool{"FLAGWARDEN_CONFIG": true}

// EnvNames lists every environment variable that can override a key, sorted.
func EnvNames() []string {
	var c Config
	fields := map[string]reflect.Value{}
	collectEnvFields(reflect.ValueOf(&c).Elem(), "", fields)
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ApplyEnv sets the keys named by FLAGWARDEN_* variables in environ. Lists are
// comma-separated. An unknown FLAGWARDEN_ variable is an error, like an unknown key.
func ApplyEnv(cfg *Config, environ []string) error {
	fields := map[string]reflect.Value{}
	collectEnvFields(reflect.ValueOf(cfg).Elem(), "", fields)
	var p problems
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || reservedEnv[name] {
			continue
		}
		f, known := fields[name]
		if !known {
			p.add(name, "is not a configuration key (see `flagwarden check-config --env`)")
			continue
		}
		if err := setFromString(f, val); err != nil {
			p.add(name, "%v", err)
		}
	}
	if len(p.errs) > 0 {
		return &Problems{Errs: p.errs}
	}
	return nil
}

// collectEnvFields maps env names to settable scalar fields (and lists of scalars).
func collectEnvFields(v reflect.Value, prefix string, out map[string]reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		fv := v.Field(i)
		if opts == "inline" {
			collectEnvFields(fv, prefix, out)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		path := prefix + strings.ToUpper(name)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Duration]() {
			collectEnvFields(fv, path+"_", out)
			continue
		}
		if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
			continue // lists of objects (tokens, queries) come from the file only
		}
		out[EnvPrefix+path] = fv
	}
}

func setFromString(f reflect.Value, s string) error {
	if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	if f.Type() == reflect.TypeFor[time.Duration]() {
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", s)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		f.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		f.SetFloat(x)
	case reflect.Slice:
		parts := []string{}
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		sl := reflect.MakeSlice(f.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setFromString(sl.Index(i), p); err != nil {
				return err
			}
		}
		f.Set(sl)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
