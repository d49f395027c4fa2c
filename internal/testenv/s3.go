package testenv

import (
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// S3Server is a real S3-compatible server private to one test: versitygw (the Versity
// S3 gateway, Apache 2.0) with its posix backend on a temporary folder, listening on a
// free loopback port, with one bucket. scripts/install-deps.sh installs it with
// `go install`. Stop and Start simulate an outage on the same address.
type S3Server struct {
	// Endpoint is the base URL (http://127.0.0.1:PORT); address the bucket path style.
	Endpoint  string
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string
	// Dir is the posix backend's root: Dir/Bucket/<key> is each object's file.
	Dir string

	t    testing.TB
	bin  string
	addr string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// S3Binary finds versitygw on PATH or in GOPATH/bin, where `go install` puts it.
func S3Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw is not on PATH nor in %s (scripts/install-deps.sh installs it): %w", filepath.Dir(p), err)
	}
	return p, nil
}

// S3 starts an S3 server for this test; it is stopped when the test ends.
func S3(t testing.TB) *S3Server {
	t.Helper()
	bin, err := S3Binary()
	if err != nil {
		Missing(t, "versitygw (S3-compatible server)", err)
	}
	root := t.TempDir()
	s := &S3Server{
		Region: "us-east-1", AccessKey: "FWTEST" + randomHex(5), SecretKey: randomHex(20), Bucket: "posthog",
		Dir: filepath.Join(root, "data"), t: t, bin: bin, log: filepath.Join(root, "versitygw.log"),
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
	}
	s.Endpoint = "http://" + s.addr
	// The posix backend serves every top-level folder as a bucket.
	if err := os.MkdirAll(filepath.Join(s.Dir, s.Bucket), 0o755); err != nil {
		t.Fatalf("create bucket folder: %v", err)
	}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// Start runs the server (again, after Stop) and waits until it accepts connections.
func (s *S3Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("open versitygw log: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--port", s.addr, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		Missing(s.t, "versitygw", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.log)
			s.t.Fatalf("versitygw did not listen on %s within 15s: %v\n%s", s.addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server; requests to Endpoint then fail with connection refused.
func (s *S3Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// ObjectPath is the file that holds an object's bytes on the posix backend.
func (s *S3Server) ObjectPath(key string) string {
	return filepath.Join(s.Dir, s.Bucket, filepath.FromSlash(key))
}
