package kubernetes

import (
	"os"
	"path/filepath"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"

	"github.com/flagwarden/flagwarden/dashboards/mixin"
)

// monitoringCodec decodes the Prometheus Operator's kinds strictly, as strictCodec does
// client-go's: an unknown field (a misspelled honorLabels) fails here.
func monitoringCodec(t *testing.T) *kjson.Serializer {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, monitoringv1.AddToScheme(s))
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
}

func decodeMonitoring(t *testing.T, file string, into runtime.Object) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("monitoring", file))
	require.NoError(t, err)
	docs, err := splitDocuments(data)
	require.NoError(t, err)
	require.Len(t, docs, 1, "%s holds one object", file)
	_, _, err = monitoringCodec(t).Decode(docs[0], nil, into)
	require.NoError(t, err, "strict decode of %s", file)
}

// TestMonitoringComponent checks the Prometheus Operator objects: a Kustomize component
// (so clusters without the operator leave it out), a ServiceMonitor that scrapes the
// Service flagwarden ships, and a PrometheusRule with exactly the rule file's groups.
func TestMonitoringComponent(t *testing.T) {
	t.Parallel()
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	data, err := os.ReadFile("monitoring/kustomization.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(data, &kust))
	require.Equal(t, "Component", kust.Kind)
	require.Equal(t, "kustomize.config.k8s.io/v1alpha1", kust.APIVersion)
	require.ElementsMatch(t, []string{"servicemonitor.yaml", "prometheusrule.yaml"}, kust.Resources)
	var base struct {
		Resources  []string `json:"resources"`
		Components []string `json:"components"`
	}
	data, err = os.ReadFile("kustomization.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &base))
	require.NotContains(t, append(base.Resources, base.Components...), "monitoring",
		"the base applies to clusters without the Prometheus Operator")

	var sm monitoringv1.ServiceMonitor
	decodeMonitoring(t, "servicemonitor.yaml", &sm)
	var svc *corev1.Service
	for _, m := range loadManifests(t) {
		if s, ok := m.obj.(*corev1.Service); ok {
			svc = s
		}
	}
	require.NotNil(t, svc)
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	require.NoError(t, err)
	require.True(t, sel.Matches(labels.Set(svc.Labels)), "the ServiceMonitor selects the Service %s", svc.Name)
	require.Len(t, sm.Spec.Endpoints, 1)
	ep := sm.Spec.Endpoints[0]
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Name)
	}
	require.Contains(t, ports, ep.Port, "the endpoint names a port of the Service")
	require.Equal(t, "/metrics", ep.Path)
	require.True(t, ep.HonorLabels, "per-pod worker series keep their namespace and pod labels")
	// The job label Prometheus gives the target is the Service's name, which the
	// generated rules select on.
	require.Contains(t, mixin.Default().Selector, `job="`+svc.Name+`"`)

	var pr monitoringv1.PrometheusRule
	decodeMonitoring(t, "prometheusrule.yaml", &pr)
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	data, err = os.ReadFile("../../dashboards/prometheus/rules.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(data, &file))
	require.NotEmpty(t, file.Groups)
	require.Equal(t, file.Groups, pr.Spec.Groups, "the PrometheusRule carries the rule file's groups")
}
