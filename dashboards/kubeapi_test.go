package dashboards

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// There is no cluster here, and the app builds its own client from a kubeconfig, so the
// pod collector is pointed at a small Kubernetes API on loopback that serves a fixed
// set of worker pods over the real wire protocol: a list, then a watch (including the
// streaming-list form, sendInitialEvents, that newer clients try first).

// kubeAPI serves pods of one namespace.
type kubeAPI struct {
	namespace string
	pods      []corev1.Pod
}

const podsResourceVersion = "100"

func (k *kubeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prefix := "/api/v1/namespaces/" + k.namespace + "/pods"
	if r.URL.Path != prefix && r.URL.Path != "/api/v1/pods" {
		http.Error(w, fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"%s not served"}`, r.URL.Path), http.StatusNotFound)
		return
	}
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var pods []corev1.Pod
	for _, p := range k.pods {
		if sel.Matches(labels.Set(p.Labels)) {
			pods = append(pods, p)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	q := r.URL.Query()
	if w1 := q.Get("watch"); w1 != "true" && w1 != "1" {
		_ = json.NewEncoder(w).Encode(corev1.PodList{
			TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: podsResourceVersion},
			Items:    pods,
		})
		return
	}
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(typ string, obj any) {
		_ = enc.Encode(map[string]any{"type": typ, "object": obj})
		if flusher != nil {
			flusher.Flush()
		}
	}
	if q.Get("sendInitialEvents") == "true" {
		for _, p := range pods {
			send("ADDED", p)
		}
		send("BOOKMARK", corev1.Pod{
			TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: podsResourceVersion,
				Annotations: map[string]string{"k8s.io/initial-events-end": "true"}},
		})
	} else if flusher != nil {
		flusher.Flush()
	}
	// Nothing changes: hold the watch open until the client gives up or its timeout.
	timeout := 5 * time.Minute
	if s, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && s > 0 {
		timeout = time.Duration(s) * time.Second
	}
	select {
	case <-r.Context().Done():
	case <-time.After(timeout):
	}
}

// startKubeAPI serves pods and writes a kubeconfig pointing at it; it returns the
// kubeconfig's path.
func startKubeAPI(t *testing.T, namespace string, pods []corev1.Pod) string {
	t.Helper()
	srv := httptest.NewServer(&kubeAPI{namespace: namespace, pods: pods})
	t.Cleanup(srv.Close)
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {server: %q}
users:
  - name: test
    user: {token: test-token}
contexts:
  - name: test
    context: {cluster: test, user: test, namespace: %s}
current-context: test
`, srv.URL, namespace)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(kubeconfig), 0o600))
	return path
}

// workerPods is a fleet in the incident's state: one worker restarted after an OOM
// kill, one in CrashLoopBackOff after OOM kills, one healthy.
func workerPods(namespace string) []corev1.Pod {
	started := metav1.NewTime(time.Now().Add(-2 * time.Hour))
	killed := metav1.NewTime(time.Now().Add(-3 * time.Minute))
	limits := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")},
	}
	oom := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 137, Reason: "OOMKilled", StartedAt: started, FinishedAt: killed,
	}}
	pod := func(name string, status corev1.ContainerStatus) corev1.Pod {
		status.Name = "celery"
		status.Image = "posthog/posthog:latest"
		phase := corev1.PodRunning
		return corev1.Pod{
			TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: namespace, UID: types.UID("uid-" + name), ResourceVersion: podsResourceVersion,
				Labels: map[string]string{"app": "celery-worker"}, CreationTimestamp: started,
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "celery", Image: status.Image, Resources: limits}}},
			Status: corev1.PodStatus{
				Phase: phase, StartTime: &started,
				ContainerStatuses: []corev1.ContainerStatus{status},
			},
		}
	}
	return []corev1.Pod{
		pod("celery-worker-0", corev1.ContainerStatus{
			RestartCount: 3, Ready: true, LastTerminationState: oom,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: killed}},
		}),
		pod("celery-worker-1", corev1.ContainerStatus{
			RestartCount: 7, LastTerminationState: oom,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "CrashLoopBackOff", Message: "back-off 5m0s restarting failed container=celery pod=celery-worker-1",
			}},
		}),
		pod("celery-worker-2", corev1.ContainerStatus{
			Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		}),
		// Not a worker: the label selector must leave it out.
		func() corev1.Pod {
			p := pod("redis-0", corev1.ContainerStatus{Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}})
			p.Labels = map[string]string{"app": "redis"}
			return p
		}(),
	}
}
