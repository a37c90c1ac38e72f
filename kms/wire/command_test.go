package wire

import "testing"

func TestCommandTable(t *testing.T) {
	tests := []struct {
		id             Command
		hex            uint16
		name           string
		write, cluster bool
	}{
		{ClusterAddNode, 0x0001, "CLUSTER:ADDNODE", true, true},
		{ClusterStatus, 0x0003, "CLUSTER:STATUS", false, true},
		{ClusterEdit, 0x0004, "CLUSTER:EDIT", true, true},
		{EnclaveCreate, 0x0065, "ENCLAVE:CREATE", true, true},
		{EnclaveList, 0x0068, "ENCLAVE:LIST", false, true},
		{KeyCreate, 0x00c9, "KEY:CREATE", true, false},
		{KeyDecrypt, 0x00ce, "KEY:DECRYPT", false, false},
		{KeyList, 0x00d0, "KEY:LIST", false, false},
		{KeyMAC, 0x00d2, "KEY:MAC", false, false},
		{PolicyAssign, 0x012f, "POLICY:ASSIGN", true, false},
		{PolicyList, 0x0132, "POLICY:LIST", false, false},
		{IdentityCreate, 0x0191, "IDENTITY:CREATE", true, false},
		{IdentityList, 0x0194, "IDENTITY:LIST", false, false},
	}
	for _, tt := range tests {
		if uint16(tt.id) != tt.hex {
			t.Errorf("%s = 0x%04x, want 0x%04x", tt.name, uint16(tt.id), tt.hex)
		}
		if tt.id.Name() != tt.name || tt.id.String() != tt.name {
			t.Errorf("0x%04x: Name %q String %q, want %q", tt.hex, tt.id.Name(), tt.id.String(), tt.name)
		}
		if tt.id.IsWrite() != tt.write || tt.id.IsCluster() != tt.cluster {
			t.Errorf("%s: IsWrite %v IsCluster %v, want %v %v", tt.name, tt.id.IsWrite(), tt.id.IsCluster(), tt.write, tt.cluster)
		}
		got, err := ParseName(" " + toMixedCase(tt.name) + " ")
		if err != nil || got != tt.id {
			t.Errorf("ParseName(%q) = %v, %v", tt.name, got, err)
		}
	}
}

func toMixedCase(s string) string {
	b := []byte(s)
	for i := range b {
		if i%2 == 0 && b[i] >= 'A' && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

func TestUnknownCommand(t *testing.T) {
	c := Command(0x7777)
	if c.Known() || c.Name() != "" || c.IsWrite() || c.IsCluster() {
		t.Fatalf("unknown command reported as known: %v", c)
	}
	if c.String() != "command 0x7777" {
		t.Fatalf("String = %q", c.String())
	}
	if _, err := ParseName("KEY:FROB"); err == nil {
		t.Fatal("ParseName accepted an unknown name")
	}
}
