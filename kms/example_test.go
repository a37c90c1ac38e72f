package kms_test

import (
	"context"
	"fmt"
	"os"

	"github.com/kmsctl/kmsctl/kms"
)

// Connect with an API key from the environment and a CA file, then ask every
// node for its own view of the cluster. (Compiled, not run: it needs a
// cluster.)
func Example() {
	key, err := kms.ParseAPIKey(os.Getenv("MINIO_KMS_API_KEY"))
	if err != nil {
		fmt.Println(err) // never contains the key
		return
	}
	cas, err := kms.LoadCAFile("/etc/minkms/certs/CAs/ca.crt")
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := kms.New(kms.Config{
		Endpoints: []string{"km1", "km2", "km3:7373"},
		APIKey:    key,
		RootCAs:   cas,
		// DialContext: sshConn.DialContext, // to reach port 7373 through SSH
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, hs := range c.ClusterStatusEach(context.Background()) {
		if hs.Err != nil {
			fmt.Println(hs.Host, "error:", hs.Err)
			continue
		}
		for id, n := range hs.Status.NodesUp {
			fmt.Println(hs.Host, "sees node", id, n.Role, "leader", n.LeaderID, "commit", n.Commit)
		}
		for id, addr := range hs.Status.NodesDown {
			fmt.Println(hs.Host, "sees node", id, "down at", addr)
		}
	}
}
