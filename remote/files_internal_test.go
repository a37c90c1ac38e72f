package remote

import "testing"

type fakeExtensions map[string]bool

func (f fakeExtensions) HasExtension(name string) (string, bool) { return "1", f[name] }

func TestSFTPPacketSize(t *testing.T) {
	limits := fakeExtensions{"limits@openssh.com": true}
	none := fakeExtensions{}
	for _, tc := range []struct {
		name    string
		set     int
		version string
		ext     fakeExtensions
		want    int
	}{
		{"OpenSSH with limits", 0, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", limits, openSSHSFTPPacket},
		{"OpenSSH before 8.6 (no limits extension)", 0, "SSH-2.0-OpenSSH_8.4p1", none, defaultSFTPPacket},
		{"other server offering limits", 0, "SSH-2.0-Go", limits, defaultSFTPPacket},
		{"other server", 0, "SSH-2.0-dropbear_2022.83", none, defaultSFTPPacket},
		{"set explicitly", 65536, "SSH-2.0-OpenSSH_9.2p1", limits, 65536},
		{"set explicitly, other server", 4096, "SSH-2.0-Go", none, 4096},
	} {
		if got := sftpPacketSize(tc.set, tc.version, tc.ext); got != tc.want {
			t.Errorf("%s: sftpPacketSize(%d, %q) = %d, want %d", tc.name, tc.set, tc.version, got, tc.want)
		}
	}
}
