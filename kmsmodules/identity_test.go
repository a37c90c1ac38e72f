package kmsmodules_test

import (
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/remote/fake"
)

// TestAdminIdentity: kms_admin_identity registers the h1: identity of the
// operator's admin API key, in check mode too, without the key in its
// message or result, and fails naming the key when there is none.
func TestAdminIdentity(t *testing.T) {
	l := newLab(t)
	h := &host{name: "kms1", conn: fake.New(t, "kms1"), node: inventory.KMSNode{Host: "kms1"}}
	for _, check := range []bool{true, false} {
		res, err := l.run("kms_admin_identity", h, nil, check)
		if err != nil || res.Changed || res.Data["identity"] != l.admin.Identity() || !strings.HasPrefix(l.admin.Identity(), "h1:") {
			t.Fatalf("check %v: %+v, %v (want %s)", check, res, err, l.admin.Identity())
		}
		if strings.Contains(res.Msg, l.admin.Secret()) || strings.Contains(res.Msg, "k1:") {
			t.Fatalf("the key is shown: %q", res.Msg)
		}
	}
	delete(l.env, inventory.EnvAPIKey)
	if _, err := l.run("kms_admin_identity", h, nil, false); err == nil || !strings.Contains(err.Error(), "admin API key") {
		t.Fatalf("no API key: %v", err)
	}
}
