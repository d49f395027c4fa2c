package pods

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotSynced is returned until the informer's first list has arrived, so that a
// cluster that cannot be reached shows as a failing collector, not an empty fleet.
var ErrNotSynced = errors.New("pod informer has not synced yet")

// Informer is a Lister backed by a client-go shared informer restricted to one namespace
// and label selector. It is a service: Start runs the informer, Stop ends it.
type Informer struct {
	factory  informers.SharedInformerFactory
	lister   listersv1.PodLister
	synced   cache.InformerSynced
	selector labels.Selector

	mu   sync.Mutex
	stop chan struct{}
}

// NewInformer watches pods in namespace matching selector (a label selector such as
// "app=celery-worker"; empty matches all).
func NewInformer(client kubernetes.Interface, namespace, selector string, resync time.Duration) (*Informer, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("label selector %q: %w", selector, err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
		// Drop what the classifier never reads; a large fleet then costs less memory.
		informers.WithTransform(func(obj any) (any, error) {
			if p, ok := obj.(*corev1.Pod); ok {
				p.ManagedFields = nil
				p.Annotations = nil
			}
			return obj, nil
		}),
	)
	pods := factory.Core().V1().Pods()
	inf := pods.Informer() // registers the informer before Start
	return &Informer{factory: factory, lister: pods.Lister(), synced: inf.HasSynced, selector: sel}, nil
}

// Name implements service.Service.
func (i *Informer) Name() string { return "pod-informer" }

// Start implements service.Service. It does not wait for the first list: until it
// arrives Pods returns ErrNotSynced.
func (i *Informer) Start(context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stop != nil {
		return errors.New("pod informer already started")
	}
	i.stop = make(chan struct{})
	i.factory.Start(i.stop)
	return nil
}

// Stop implements service.Service.
func (i *Informer) Stop(context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stop == nil {
		return nil
	}
	close(i.stop)
	i.stop = nil
	i.factory.Shutdown()
	return nil
}

// Pods implements Lister. The selector is applied again because a watch can deliver
// objects the list would not have (the fake clientset does exactly that).
func (i *Informer) Pods(context.Context) ([]*corev1.Pod, error) {
	if !i.synced() {
		return nil, ErrNotSynced
	}
	return i.lister.List(i.selector)
}

// Source implements Lister.
func (i *Informer) Source() string { return "kubernetes" }

// NewClient builds a clientset: in-cluster from the service account, else from the
// kubeconfig at path (empty: $KUBECONFIG and the default loading rules).
func NewClient(inCluster bool, path string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if inCluster {
		cfg, err = rest.InClusterConfig()
	} else {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if path != "" {
			rules.ExplicitPath = path
		}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}
