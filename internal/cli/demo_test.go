package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

// getJSON fetches an API path from the demo and decodes it into v.
func getJSON(t *testing.T, base, path string, v any) int {
	t.Helper()
	resp, err := http.Get(base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK && v != nil {
		require.NoError(t, json.Unmarshal(body, v), "%s: %s", path, body)
	}
	return resp.StatusCode
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDemoEndToEnd starts the demo in process, as `flagwarden demo` does, and checks
// that every part answers with the simulated fleet's data: the dashboard, the queues
// measured in the embedded broker, 2,000 teams, the simulated pods, payloads built by
// the real engine into the embedded cache, and the outlier finding for the growing
// team. Then it stops and leaves no goroutine behind.
func TestDemoEndToEnd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	ctx := t.Context()
	started := time.Now()
	d, err := startDemo(ctx, demoOptions{Speed: 600, Listen: "127.0.0.1:0", Seed: 7})
	require.NoError(t, err)
	stopped := false
	defer func() {
		if !stopped {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = d.Stop(ctx)
		}
	}()
	t.Logf("demo started in %s", time.Since(started).Round(time.Millisecond))
	base := "http://" + d.Addr()

	var banner bytes.Buffer
	d.describe(&banner)
	require.Contains(t, banner.String(), base+"/")
	require.Contains(t, banner.String(), "Team 2 is an internal test-automation account")
	tok := regexp.MustCompile(`token\s+(demo-\S+) \(operate`).FindStringSubmatch(banner.String())
	require.Len(t, tok, 2, "the banner prints an operate token: %s", banner.String())
	who, err := http.NewRequest("GET", base+"/api/v1/whoami", nil)
	require.NoError(t, err)
	who.Header.Set("Authorization", "Bearer "+tok[1])
	whoResp, err := http.DefaultClient.Do(who)
	require.NoError(t, err)
	var me struct {
		CanOperate bool `json:"can_operate"`
	}
	require.NoError(t, json.NewDecoder(whoResp.Body).Decode(&me))
	whoResp.Body.Close()
	require.True(t, me.CanOperate, "the printed token may quarantine, release and rebuild")

	// The dashboard.
	resp, err := http.Get(base + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	require.Contains(t, strings.ToLower(string(page)), "<html")

	// Queues come from the embedded broker, measured by the real Celery collector.
	type queue struct {
		Name    string                `json:"name"`
		Depth   int64                 `json:"depth"`
		Bound   bool                  `json:"bound"`
		History []struct{ V float64 } `json:"history"`
	}
	var queues struct {
		Collected bool    `json:"collected"`
		Queues    []queue `json:"queues"`
	}
	eventually(t, 60*time.Second, "the feature_flags queue measured several times", func() bool {
		if getJSON(t, base, "/api/v1/queues", &queues) != http.StatusOK {
			return false
		}
		for _, q := range queues.Queues {
			if q.Name == "feature_flags" && q.Bound && len(q.History) >= 3 {
				return true
			}
		}
		return false
	})
	names := map[string]bool{}
	for _, q := range queues.Queues {
		names[q.Name] = true
	}
	require.True(t, names["flagwarden"], "flagwarden's own queue is measured too: %v", names)
	// The messages are really in the broker: kombu's binding and the queue's list.
	require.True(t, d.broker.Exists("_kombu.binding.feature_flags"))
	var sawMessages bool
	eventually(t, 60*time.Second, "messages published to the embedded broker", func() bool {
		n, _ := d.broker.List("feature_flags")
		u, _ := d.broker.HKeys("unacked")
		sawMessages = len(n)+len(u) > 0
		return sawMessages
	})

	// Teams, measured by the real team-size collector from the simulated source.
	var teams struct {
		Total int64 `json:"total"`
		Teams []struct {
			TeamID      int64 `json:"team_id"`
			Outlier     bool  `json:"outlier"`
			Quarantined bool  `json:"quarantined"`
		} `json:"teams"`
	}
	eventually(t, 30*time.Second, "2,000 teams listed", func() bool {
		return getJSON(t, base, "/api/v1/teams?limit=5", &teams) == http.StatusOK && teams.Total == 2000
	})
	require.Equal(t, int64(2), teams.Teams[0].TeamID, "the test-automation team is the largest")

	// Pods, through the pod collector's lister interface.
	var pods struct {
		Pods []struct {
			Name        string `json:"name"`
			MemoryLimit int64  `json:"memory_limit_bytes"`
		} `json:"pods"`
	}
	eventually(t, 30*time.Second, "4 simulated worker pods", func() bool {
		return getJSON(t, base, "/api/v1/pods", &pods) == http.StatusOK && len(pods.Pods) == 4
	})
	require.Equal(t, int64(8<<30), pods.Pods[0].MemoryLimit)

	// The real engine takes flagwarden's copy of the Celery tasks, builds from the
	// simulated flag source, and publishes into the embedded cache, from where the API
	// serves the payload.
	var status struct {
		Quarantined []struct {
			TeamID int64 `json:"team_id"`
		} `json:"quarantined"`
		Recent []struct {
			TeamID int64 `json:"team_id"`
			OK     bool  `json:"ok"`
			Flags  int64 `json:"flags"`
			Reason string
		} `json:"recent"`
	}
	var built int64
	eventually(t, 60*time.Second, "a build from a Celery task, served from the cache", func() bool {
		if getJSON(t, base, "/api/v1/rebuilds", &status) != http.StatusOK {
			return false
		}
		for _, r := range status.Recent {
			if r.OK && r.Flags > 0 && r.Reason == "celery" {
				built = r.TeamID
				return true
			}
		}
		return false
	})
	var payload struct {
		Flags []struct {
			Key string `json:"key"`
		} `json:"flags"`
	}
	require.Equal(t, http.StatusOK, getJSON(t, base, fmt.Sprintf("/api/v1/teams/%d/flags", built), &payload))
	require.NotEmpty(t, payload.Flags)
	require.True(t, strings.HasPrefix(payload.Flags[0].Key, "flag-"), payload.Flags[0].Key)

	// The growing team is found and quarantined.
	type finding struct {
		Kind    string `json:"kind"`
		Subject string `json:"subject"`
		State   string `json:"state"`
	}
	var findings struct {
		Active []finding `json:"active"`
	}
	kinds := map[string]bool{}
	eventually(t, 90*time.Second, "outlier and quarantine findings for team 2", func() bool {
		if getJSON(t, base, "/api/v1/findings", &findings) != http.StatusOK {
			return false
		}
		clear(kinds)
		for _, f := range findings.Active {
			if f.Subject == "2" {
				kinds[f.Kind] = true
			}
		}
		return kinds["outlier_team"] && kinds["team_quarantined"]
	})
	require.Equal(t, http.StatusOK, getJSON(t, base, "/api/v1/rebuilds", &status))
	require.Len(t, status.Quarantined, 1)
	require.Equal(t, int64(2), status.Quarantined[0].TeamID)

	// Every series has been set by now: the exposition follows Prometheus' conventions
	// (promtool prints nothing) and carries the build information.
	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	exposition, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(exposition), "flagwarden_build_info{")
	require.Empty(t, testenv.PromtoolCheckMetrics(t, exposition), "promtool check metrics on the demo's /metrics")

	// A clean stop.
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(stopCtx))
	stopped = true
	_, err = http.Get(base + "/")
	require.Error(t, err, "nothing is served after Stop")
	http.DefaultClient.CloseIdleConnections()
}

func TestDemoRejectsBadSpeed(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main(t.Context(), []string{"demo", "--speed", "-3"}, Env{Stdout: &out, Stderr: &errOut})
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "--speed must be between 0 and 10000")
}

// TestDemoOnABusyAddress: a listen address already taken is a clear error (the demo
// cleans up what it had started), not a crash.
func TestDemoOnABusyAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	var out, errOut bytes.Buffer
	code := Main(t.Context(), []string{"demo", "--listen", l.Addr().String()}, Env{Stdout: &out, Stderr: &errOut})
	require.Equal(t, 1, code, out.String())
	require.Contains(t, errOut.String(), "address already in use")
}

// TestDemoPagesAlertmanager runs the demo with a real Alertmanager: the outlier finding
// for the growing team arrives as an alert whose times are on the wall clock, though
// the demo runs 600 times faster.
func TestDemoPagesAlertmanager(t *testing.T) {
	bin := testenv.Binary(t, "prometheus-alertmanager")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "am.yml"), []byte("route:\n  receiver: none\nreceivers:\n- name: none\n"), 0o600))
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 20*time.Second, "alertmanager ready", func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	started := time.Now()
	d, err := startDemo(t.Context(), demoOptions{Speed: 600, Listen: "127.0.0.1:0", Seed: 1, Alertmanager: "http://" + addr})
	require.NoError(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, d.Stop(ctx))
	}()

	type alert struct {
		Labels   map[string]string `json:"labels"`
		StartsAt time.Time         `json:"startsAt"`
		EndsAt   time.Time         `json:"endsAt"`
	}
	var got alert
	eventually(t, 60*time.Second, "the outlier alert for team 2 in Alertmanager", func() bool {
		var alerts []alert
		if getJSON(t, "http://"+addr, "/api/v2/alerts", &alerts) != http.StatusOK {
			return false
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "FlagwardenOutlierTeam" && a.Labels["kind"] == "outlier_team" && a.Labels["team"] == "2" {
				got = a
				return true
			}
		}
		return false
	})
	now := time.Now()
	require.False(t, got.StartsAt.Before(started.Add(-time.Second)), "starts %s, demo started %s", got.StartsAt, started)
	require.False(t, got.StartsAt.After(now.Add(time.Second)), "starts %s in the future (now %s): not on the wall clock", got.StartsAt, now)
	require.True(t, got.EndsAt.After(now), "still firing")
	require.True(t, got.EndsAt.Before(now.Add(10*time.Minute)), "ends %s: a few resend intervals ahead, not hours", got.EndsAt)
}
