package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Alertmanager is a real Alertmanager (Debian's prometheus-alertmanager) of the test's
// own, on a free loopback port without HA gossip, routing every alert to one webhook.
// Kill and Start make an outage; alerts it held are lost with it, as in production
// without persistence.
type Alertmanager struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartAlertmanager starts Alertmanager sending every group to webhook, grouped by
// alertname, queue, team and namespace with short waits.
func StartAlertmanager(t testing.TB, webhook string) *Alertmanager {
	t.Helper()
	bin := Binary(t, "prometheus-alertmanager")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: test
  group_by: [alertname, queue, team, namespace]
  group_wait: 100ms
  group_interval: 200ms
  repeat_interval: 1h
receivers:
- name: test
  webhook_configs:
  - url: %q
    send_resolved: true
`, webhook)
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	am := &Alertmanager{t: t, bin: bin, dir: dir, port: FreePort(t)}
	am.Start()
	t.Cleanup(am.Kill)
	return am
}

// Addr is host:port.
func (am *Alertmanager) Addr() string { return "127.0.0.1:" + strconv.Itoa(am.port) }

// Start starts Alertmanager (again, on the same port) and waits until it is ready.
func (am *Alertmanager) Start() {
	am.t.Helper()
	am.cmd = exec.Command(am.bin,
		"--config.file="+filepath.Join(am.dir, "am.yml"),
		"--storage.path="+filepath.Join(am.dir, "data"),
		"--web.listen-address="+am.Addr(),
		"--cluster.listen-address=",
		"--log.level=warn")
	am.cmd.Stdout, am.cmd.Stderr = os.Stderr, os.Stderr
	if err := am.cmd.Start(); err != nil {
		am.t.Fatalf("start alertmanager: %v", err)
	}
	am.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(am.cmd, am.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + am.Addr() + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			am.t.Fatalf("alertmanager on %s not ready: %v", am.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops Alertmanager with SIGKILL. Idempotent.
func (am *Alertmanager) Kill() {
	if am.cmd == nil || am.cmd.Process == nil {
		return
	}
	_ = am.cmd.Process.Kill()
	<-am.exited
	am.cmd = nil
}

// AMAlert is an alert as Alertmanager's API lists it.
type AMAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	GeneratorURL string            `json:"generatorURL"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

// Alerts asks Alertmanager's API for the alerts with this alertname (nil while it is
// down).
func (am *Alertmanager) Alerts(alertname string) []AMAlert {
	q := url.Values{"filter": {fmt.Sprintf("alertname=%q", alertname)}}
	resp, err := http.Get("http://" + am.Addr() + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []AMAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		am.t.Errorf("decode alerts: %v", err)
	}
	return out
}

// WebhookAlert is one alert of a webhook notification.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	GeneratorURL string            `json:"generatorURL"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
}

// Webhook receives Alertmanager's webhook notifications.
type Webhook struct {
	mu       sync.Mutex
	messages [][]WebhookAlert
	srv      *httptest.Server
}

// NewWebhook starts a receiver on loopback; a body that is not JSON fails the test.
func NewWebhook(t testing.TB) *Webhook {
	w := &Webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) {
		var m struct {
			Alerts []WebhookAlert `json:"alerts"`
		}
		body, _ := io.ReadAll(io.LimitReader(req.Body, 4<<20))
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook body is not JSON: %v: %s", err, body)
		}
		w.mu.Lock()
		w.messages = append(w.messages, m.Alerts)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// URL is where Alertmanager posts.
func (w *Webhook) URL() string { return w.srv.URL }

// Find returns the newest alert received with this alertname and status, if any; with
// labels, only one carrying each of them.
func (w *Webhook) Find(alertname, status string, labels ...string) (WebhookAlert, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.messages) - 1; i >= 0; i-- {
	next:
		for _, a := range w.messages[i] {
			if a.Labels["alertname"] != alertname || a.Status != status {
				continue
			}
			for j := 0; j+1 < len(labels); j += 2 {
				if a.Labels[labels[j]] != labels[j+1] {
					continue next
				}
			}
			return a, true
		}
	}
	return WebhookAlert{}, false
}
