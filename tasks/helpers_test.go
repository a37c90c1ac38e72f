package tasks_test

import "github.com/kmsctl/kmsctl/remote/fake"

// callList describes every call made on c but Close, in order: a command
// line, or "upload PATH", "stat PATH" and so on.
func callList(c *fake.Conn) []string {
	var out []string
	for _, call := range c.Calls() {
		if call.Kind != fake.KindClose {
			out = append(out, call.String())
		}
	}
	return out
}

// closes counts the Close calls made on c.
func closes(c *fake.Conn) int {
	n := 0
	for _, call := range c.Calls() {
		if call.Kind == fake.KindClose {
			n++
		}
	}
	return n
}

// sentinel is a fake secret that must never appear in output.
const sentinel = "S3NT1NEL-hsm:aes256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="
