package hypercache

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

type djangoResult struct {
	Key     string `json:"key"`
	Missing bool   `json:"missing"`
	Error   string `json:"error"`
	Len     int    `json:"len"`
	SHA256  string `json:"sha256"`
}

// djangoGet reads keys through testdata/django_cache.py (django-redis's cache.get).
func djangoGet(t *testing.T, py, url string, keys ...string) map[string]djangoResult {
	t.Helper()
	cmd := exec.Command(py, append([]string{"testdata/django_cache.py", url, "get"}, keys...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "django_cache.py: %s", stderr.String())
	res := map[string]djangoResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r djangoResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		res[r.Key] = r
	}
	require.Len(t, res, len(keys))
	return res
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
