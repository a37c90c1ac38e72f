package kmsmodules

import (
	"testing"

	"github.com/kmsctl/kmsctl/tasks"
)

// TestClusterLock: exactly the modules that change a cluster's membership
// or state ask for its lock; the read-only ones never do.
func TestClusterLock(t *testing.T) {
	reg := tasks.NewRegistry()
	Register(reg, Options{Getenv: func(string) string { return "" }})
	want := map[string]bool{"kms_remove_node": true, "kms_add_node": true, "kms_restore": true}
	for _, name := range reg.Names() {
		m, _ := reg.Lookup(name)
		spec := m.Spec()
		if spec.ClusterLock != want[name] {
			t.Errorf("%s: ClusterLock = %v, want %v", name, spec.ClusterLock, want[name])
		}
		if spec.ClusterLock && spec.ReadOnly {
			t.Errorf("%s: both ClusterLock and ReadOnly", name)
		}
	}
	for name := range want {
		if _, ok := reg.Lookup(name); !ok {
			t.Errorf("%s is not registered", name)
		}
	}
}
