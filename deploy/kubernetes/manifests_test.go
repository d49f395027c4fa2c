package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/flagwarden/flagwarden/internal/cli"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/web"
)

// manifest is one decoded object and the file it came from.
type manifest struct {
	file string
	obj  runtime.Object
}

// strictCodec rejects unknown and duplicate fields, which the universal deserializer
// silently drops: a misspelled `readinesProbe` must fail here, not in a cluster.
var strictCodec = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeManifest decodes one YAML document as a typed object of its kind.
func decodeManifest(doc []byte) (runtime.Object, error) {
	obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, _, err := strictCodec.Decode(doc, nil, nil); err != nil {
		return nil, fmt.Errorf("strict decode of %s: %w", gvk.Kind, err)
	}
	if _, unstructured := obj.(runtime.Unstructured); unstructured {
		return nil, fmt.Errorf("%s is not a kind client-go knows", gvk)
	}
	return obj, nil
}

// splitDocuments splits a multi-document YAML stream, skipping empty documents.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// manifestFiles lists the object manifests: every YAML file but the Kustomization.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	require.NotEmpty(t, files)
	return files
}

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		docs, err := splitDocuments(data)
		require.NoError(t, err, f)
		require.NotEmpty(t, docs, "%s holds no object", f)
		for i, doc := range docs {
			obj, err := decodeManifest(doc)
			require.NoError(t, err, "%s document %d", f, i)
			out = append(out, manifest{file: f, obj: obj})
		}
	}
	return out
}

// objects gathers the decoded manifests by kind; each kind appears exactly once.
type objects struct {
	sa         *corev1.ServiceAccount
	role       *rbacv1.Role
	binding    *rbacv1.RoleBinding
	configMap  *corev1.ConfigMap
	secret     *corev1.Secret
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
}

func loadObjects(t *testing.T) objects {
	t.Helper()
	var o objects
	seen := map[string]string{}
	for _, m := range loadManifests(t) {
		kind := fmt.Sprintf("%T", m.obj)
		require.NotContains(t, seen, kind, "%s: a second %s (first in %s)", m.file, kind, seen[kind])
		seen[kind] = m.file
		meta, ok := m.obj.(metav1.Object)
		require.True(t, ok, "%s: %s has no object metadata", m.file, kind)
		require.Empty(t, meta.GetNamespace(), "%s: manifests are namespace-agnostic; set the namespace in an overlay", m.file)
		require.Equal(t, "flagwarden", meta.GetLabels()["app.kubernetes.io/name"], "%s: %s lacks the app label", m.file, meta.GetName())
		switch obj := m.obj.(type) {
		case *corev1.ServiceAccount:
			o.sa = obj
		case *rbacv1.Role:
			o.role = obj
		case *rbacv1.RoleBinding:
			o.binding = obj
		case *corev1.ConfigMap:
			o.configMap = obj
		case *corev1.Secret:
			o.secret = obj
		case *appsv1.Deployment:
			o.deployment = obj
		case *corev1.Service:
			o.service = obj
		case *policyv1.PodDisruptionBudget:
			o.pdb = obj
		default:
			t.Fatalf("%s: unexpected kind %s", m.file, kind)
		}
	}
	for name, present := range map[string]bool{
		"ServiceAccount": o.sa != nil, "Role": o.role != nil, "RoleBinding": o.binding != nil,
		"ConfigMap": o.configMap != nil, "Secret (example)": o.secret != nil, "Deployment": o.deployment != nil,
		"Service": o.service != nil, "PodDisruptionBudget": o.pdb != nil,
	} {
		require.True(t, present, "no %s manifest", name)
	}
	return o
}

func (o objects) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := o.deployment.Spec.Template.Spec.Containers
	require.Len(t, cs, 1, "the Deployment runs one container")
	return cs[0]
}

func TestDecodeManifestRejectsBrokenObjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicass: 2\n", "unknown field"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: 8080\n", "decode"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n", "no kind"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nmetadata: {name: y}\n", "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeManifest([]byte(tt.doc))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestManifestsAreValidObjects(t *testing.T) {
	t.Parallel()
	o := loadObjects(t)
	d := o.deployment
	c := o.container(t)

	require.NotNil(t, d.Spec.Replicas)
	require.EqualValues(t, 2, *d.Spec.Replicas, "two replicas; leader election keeps paging single")
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	require.NoError(t, err)
	podLabels := labels.Set(d.Spec.Template.Labels)
	require.True(t, sel.Matches(podLabels), "the Deployment's selector must match its pod template")

	require.Equal(t, "flagwarden", c.Name)
	require.NotEmpty(t, c.Image)
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		require.Contains(t, c.Resources.Requests, res, "request for %s", res)
	}
	require.Contains(t, c.Resources.Limits, corev1.ResourceMemory, "a memory limit, which the rebuild budget is sized against")
	lim := c.Resources.Limits[corev1.ResourceMemory]
	req := c.Resources.Requests[corev1.ResourceMemory]
	require.LessOrEqual(t, req.Cmp(lim), 0, "memory request must not exceed the limit")

	require.NotNil(t, c.LivenessProbe, "liveness probe")
	require.NotNil(t, c.ReadinessProbe, "readiness probe")
	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)

	// Non-root, matching the image's USER.
	psc := d.Spec.Template.Spec.SecurityContext
	require.NotNil(t, psc)
	require.True(t, *psc.RunAsNonRoot)
	require.NotZero(t, *psc.RunAsUser)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)

	// Scrape annotations point at the container's metrics port.
	ann := d.Spec.Template.Annotations
	require.Equal(t, "true", ann["prometheus.io/scrape"])
	require.Equal(t, "/metrics", ann["prometheus.io/path"])
	require.Equal(t, strconv.Itoa(int(namedPort(t, c, "http"))), ann["prometheus.io/port"])

	// The Service reaches the pods on a port the container declares.
	svcSel := labels.SelectorFromSet(o.service.Spec.Selector)
	require.False(t, svcSel.Empty())
	require.True(t, svcSel.Matches(podLabels), "the Service selects no flagwarden pod")
	require.Len(t, o.service.Spec.Ports, 1)
	namedPort(t, c, o.service.Spec.Ports[0].TargetPort.String())

	// The PDB covers the pods and still lets one go.
	pdbSel, err := metav1.LabelSelectorAsSelector(o.pdb.Spec.Selector)
	require.NoError(t, err)
	require.True(t, pdbSel.Matches(podLabels), "the PodDisruptionBudget selects no flagwarden pod")
	require.NotNil(t, o.pdb.Spec.MinAvailable)
	require.Less(t, o.pdb.Spec.MinAvailable.IntValue(), int(*d.Spec.Replicas), "a PDB as large as the Deployment blocks every drain")
	require.GreaterOrEqual(t, o.pdb.Spec.MinAvailable.IntValue(), 1)
}

// namedPort returns the container port called name (or numbered name), failing the
// test when the container declares no such port.
func namedPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name || strconv.Itoa(int(p.ContainerPort)) == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

func TestPermissionsAreReadOnlyPods(t *testing.T) {
	t.Parallel()
	o := loadObjects(t)
	require.Equal(t, o.sa.Name, o.deployment.Spec.Template.Spec.ServiceAccountName, "the pods run as the manifests' ServiceAccount")
	require.Equal(t, "Role", o.binding.RoleRef.Kind)
	require.Equal(t, o.role.Name, o.binding.RoleRef.Name, "the RoleBinding binds the Role")
	require.Len(t, o.binding.Subjects, 1)
	require.Equal(t, rbacv1.ServiceAccountKind, o.binding.Subjects[0].Kind)
	require.Equal(t, o.sa.Name, o.binding.Subjects[0].Name)

	// Exactly get/list/watch on pods: an informer needs list and watch, a lookup get.
	var granted []string
	for _, r := range o.role.Rules {
		require.Equal(t, []string{""}, r.APIGroups, "core API group only")
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				granted = append(granted, res+":"+v)
			}
		}
	}
	sort.Strings(granted)
	require.Equal(t, []string{"pods:get", "pods:list", "pods:watch"}, granted)
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("kustomization.yaml")
	require.NoError(t, err)
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Labels     []any    `json:"labels"`
		Resources  []string `json:"resources"`
	}
	require.NoError(t, yaml.UnmarshalStrict(data, &k, yaml.DisallowUnknownFields), "kustomization.yaml")
	require.Equal(t, "Kustomization", k.Kind)
	// Every manifest but the example Secret, which holds placeholders only.
	want := slices.DeleteFunc(manifestFiles(t), func(f string) bool { return f == "secret.example.yaml" })
	got := slices.Clone(k.Resources)
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got)
}

// deploymentEnviron is the environment the Deployment gives the container, with Secret
// references resolved from the example Secret and field references from namespace.
func deploymentEnviron(t *testing.T, o objects, namespace string) []string {
	t.Helper()
	c := o.container(t)
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			require.Equal(t, o.secret.Name, ref.Name, "%s reads a Secret the manifests do not describe", e.Name)
			v, ok := o.secret.StringData[ref.Key]
			require.True(t, ok, "%s: example Secret has no key %q", e.Name, ref.Key)
			env = append(env, e.Name+"="+v)
		case e.ValueFrom.FieldRef != nil:
			require.Equal(t, "metadata.namespace", e.ValueFrom.FieldRef.FieldPath)
			env = append(env, e.Name+"="+namespace)
		default:
			t.Fatalf("%s: unsupported env source", e.Name)
		}
	}
	return env
}

// configFile writes the ConfigMap's config where the container would see it and returns
// that path and the path the container's --config flag names inside the container.
func configFile(t *testing.T, o objects) (hostPath string) {
	t.Helper()
	c := o.container(t)
	spec := o.deployment.Spec.Template.Spec
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].ConfigMap != nil && spec.Volumes[i].ConfigMap.Name == o.configMap.Name {
			vol = &spec.Volumes[i]
		}
	}
	require.NotNil(t, vol, "no volume mounts the ConfigMap %s", o.configMap.Name)
	var mount string
	for _, m := range c.VolumeMounts {
		if m.Name == vol.Name {
			mount = m.MountPath
		}
	}
	require.NotEmpty(t, mount, "the ConfigMap volume is not mounted")
	i := slices.Index(c.Args, "--config")
	require.GreaterOrEqual(t, i, 0, "args must pass --config")
	require.Less(t, i+1, len(c.Args))
	inContainer := c.Args[i+1]
	require.Equal(t, mount, filepath.Dir(inContainer), "--config must name a file in the ConfigMap mount")
	key := filepath.Base(inContainer)
	data, ok := o.configMap.Data[key]
	require.True(t, ok, "the ConfigMap has no key %q that --config names", key)

	hostPath = filepath.Join(t.TempDir(), key)
	require.NoError(t, os.WriteFile(hostPath, []byte(data), 0o600))
	return hostPath
}

func TestConfigMapPassesCheckConfig(t *testing.T) {
	t.Parallel()
	o := loadObjects(t)
	path := configFile(t, o)
	environ := deploymentEnviron(t, o, "workers")

	run := func(env []string, args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), append([]string{"check-config"}, args...),
			cli.Env{Stdout: &stdout, Stderr: &stderr, Environ: env})
		return code, stdout.String() + stderr.String()
	}

	code, out := run(environ, path)
	require.Equal(t, 0, code, "check-config with the Deployment's environment:\n%s", out)
	require.Contains(t, out, "configuration is valid")

	// The file alone is incomplete on purpose: the URLs come from the Secret. Without
	// the environment check-config must name each missing URL.
	code, out = run(nil, path)
	require.Equal(t, 1, code, out)
	for _, field := range []string{"flag_database.url", "broker.url", "cache.url", "kubernetes.namespace"} {
		require.Contains(t, out, field)
	}

	// Every variable the Deployment sets is a configuration key.
	known := config.EnvNames()
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		require.Contains(t, known, name, "the Deployment sets %s, which is no configuration key", name)
	}
}

func TestConfigFitsTheContainer(t *testing.T) {
	t.Parallel()
	o := loadObjects(t)
	c := o.container(t)
	cfg, err := config.Load(configFile(t, o), deploymentEnviron(t, o, "workers"))
	require.NoError(t, err)

	require.Equal(t, "workers", cfg.Kubernetes.Namespace, "the namespace comes from the downward API")
	require.True(t, cfg.Kubernetes.Enabled && cfg.Kubernetes.InCluster, "pods are read with the service account")
	require.True(t, cfg.Rebuild.Enabled)

	// The server listens on every interface, on the port the probes and Service use.
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	require.NoError(t, err)
	require.Contains(t, []string{"", "0.0.0.0", "::"}, host, "http.listen must not be loopback inside a pod")
	require.Equal(t, strconv.Itoa(int(namedPort(t, c, "http"))), port)

	// Memory: the Go limit sits below the container limit with headroom, and the build
	// budget (checked against the Go limit by config validation) is set explicitly.
	limit := c.Resources.Limits[corev1.ResourceMemory]
	require.Positive(t, int64(cfg.Rebuild.GoMemoryLimit), "rebuild.go_memory_limit must be set in a container")
	require.LessOrEqual(t, float64(cfg.Rebuild.GoMemoryLimit), 0.9*float64(limit.Value()),
		"rebuild.go_memory_limit %s leaves under 10%% of the %s container limit for non-heap memory", cfg.Rebuild.GoMemoryLimit, limit.String())
	require.LessOrEqual(t, cfg.Rebuild.MemoryBudget, cfg.Rebuild.GoMemoryLimit)
	require.Negative(t, resource.NewQuantity(int64(cfg.Rebuild.MemoryBudget), resource.BinarySI).Cmp(limit))

	// A stop finishes before the kubelet's SIGKILL.
	grace := o.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	require.NotNil(t, grace)
	require.Less(t, cfg.Shutdown.DrainTimeout.Seconds(), float64(*grace), "shutdown.drain_timeout must end before terminationGracePeriodSeconds")

	// The readiness probe waits longer than the server's own readiness timeout (5s), so a
	// slow dependency shows as not ready rather than as a probe timeout.
	require.Greater(t, c.ReadinessProbe.TimeoutSeconds, int32(5))
}

// probes returns every HTTP probe of the container by name.
func probes(c corev1.Container) map[string]*corev1.Probe {
	out := map[string]*corev1.Probe{}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p != nil {
			out[name] = p
		}
	}
	return out
}

func TestProbesHitPathsTheServerServes(t *testing.T) {
	t.Parallel()
	o := loadObjects(t)
	c := o.container(t)

	depDown := errors.New("connection refused")
	tests := []struct {
		name  string
		ready map[string]web.ReadyFunc
		want  map[string]int // probe name -> status
	}{
		{
			name:  "dependencies up",
			ready: map[string]web.ReadyFunc{"state_database": func(context.Context) error { return nil }},
			want:  map[string]int{"startup": http.StatusOK, "liveness": http.StatusOK, "readiness": http.StatusOK},
		},
		{
			// A dependency outage takes the pod out of the Service but must not restart
			// it: liveness and startup stay green.
			name:  "dependency down",
			ready: map[string]web.ReadyFunc{"broker": func(context.Context) error { return depDown }},
			want:  map[string]int{"startup": http.StatusOK, "liveness": http.StatusOK, "readiness": http.StatusServiceUnavailable},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(web.NewRouter(web.Options{Gatherer: prometheus.NewRegistry(), Ready: tt.ready}))
			t.Cleanup(srv.Close)
			got := probes(c)
			require.Len(t, got, len(tt.want))
			for name, p := range got {
				require.NotNil(t, p.HTTPGet, "%s probe is not an HTTP probe", name)
				namedPort(t, c, p.HTTPGet.Port.String())
				resp, err := http.Get(srv.URL + p.HTTPGet.Path)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, tt.want[name], resp.StatusCode, "%s probe GET %s", name, p.HTTPGet.Path)
			}
		})
	}

	// The scrape annotation's path is served too.
	srv := httptest.NewServer(web.NewRouter(web.Options{Gatherer: prometheus.NewRegistry()}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + o.deployment.Spec.Template.Annotations["prometheus.io/path"])
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
