package testenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// DjangoValue is what django-redis's cache.get returned for one key, as
// django_cache.py reports it: the string's length and SHA-256, or why not.
type DjangoValue struct {
	Key     string `json:"key"`
	Missing bool   `json:"missing"`
	Error   string `json:"error"`
	Len     int    `json:"len"`
	SHA256  string `json:"sha256"`
	Head    string `json:"head"`
}

// djangoScript is the absolute path of django_cache.py beside this file, so that tests
// of any package can run it.
func djangoScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "django_cache.py")
}

// DjangoGet reads keys (without django's "posthog:1:" prefix) from the Redis at url
// through django-redis configured as PostHog configures it.
func DjangoGet(t testing.TB, url string, keys ...string) map[string]DjangoValue {
	t.Helper()
	py := Python(t, "django_redis", "zstd")
	cmd := exec.Command(py, append([]string{djangoScript(), url, "get"}, keys...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("django_cache.py get: %v: %s", err, stderr.String())
	}
	res := map[string]DjangoValue{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var v DjangoValue
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("django_cache.py printed %q: %v", sc.Text(), err)
		}
		res[v.Key] = v
	}
	if len(res) != len(keys) {
		t.Fatalf("django_cache.py answered for %d of %d keys", len(res), len(keys))
	}
	return res
}

// DjangoSet stores the text of file under key through django-redis, as Django would.
func DjangoSet(t testing.TB, url, key, file string) {
	t.Helper()
	py := Python(t, "django_redis", "zstd")
	if out, err := exec.Command(py, djangoScript(), url, "set", key, file).CombinedOutput(); err != nil {
		t.Fatalf("django_cache.py set %s: %v: %s", key, err, out)
	}
}
