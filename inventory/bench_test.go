package inventory

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// bigInventory is n hosts in 10 groups under 2 parents, with a few vars each.
func bigInventory(n int) []byte {
	var b strings.Builder
	b.WriteString("all:\n  vars:\n    ansible_user: admin\n  children:\n")
	for p := 0; p < 2; p++ {
		fmt.Fprintf(&b, "    parent%d:\n      vars:\n        kms_api: ssh\n      children:\n", p)
		for g := p * 5; g < p*5+5; g++ {
			fmt.Fprintf(&b, "        g%d:\n          vars:\n            kms_port: 74%02d\n          hosts:\n", g, g)
			for h := g; h < n; h += 10 {
				fmt.Fprintf(&b, "            host%d:\n              ansible_host: 10.%d.%d.%d\n", h, h>>16&255, h>>8&255, h&255)
			}
		}
	}
	return []byte(b.String())
}

func BenchmarkParse1000(b *testing.B) {
	data := bigInventory(1000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("big.yml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRange10000(b *testing.B) {
	data := []byte("all:\n  hosts:\n    h[1:10000]:\n      ansible_port: 22\n")
	for b.Loop() {
		if _, err := Parse("r.yml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSelect1000(b *testing.B) {
	inv, err := Parse("big.yml", bigInventory(1000))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := inv.Select("parent0:&g1:!host11:host9*"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGraphVars1000(b *testing.B) {
	inv, err := Parse("big.yml", bigInventory(1000))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := inv.Graph(io.Discard, true); err != nil {
			b.Fatal(err)
		}
	}
}
