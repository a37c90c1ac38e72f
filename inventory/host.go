package inventory

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// Host is one inventory host resolved once, with the extra variables (-e)
// applied: its variables, how to reach it over SSH and its Key Manager
// layout, all read from the same merged variables. Resolve it once per run
// and hand the value on; nothing downstream resolves the host again.
type Host struct {
	Name string // inventory host name
	// Vars are the host's variables as Vars returns them. Several plays
	// share the map: treat it as read-only.
	Vars map[string]any
	SSH  SSHSettings // how to reach the host
	KMS  KMSNode     // the Key Manager layout on the host
}

// SSHSettings are how to reach a host over SSH, from the Ansible connection
// variables and the kms_ssh_* variables. They are settings, not a
// connection: the CLI's dialer makes the connection from them.
type SSHSettings struct {
	Host           string   // inventory host name
	Address        string   // ansible_host (or ansible_ssh_host), else the host name
	Port           int      // ansible_port (or ansible_ssh_port); 0 = let ssh_config decide (22)
	User           string   // ansible_user (or ansible_ssh_user); "" = let ssh_config decide
	PrivateKeyFile string   // ansible_ssh_private_key_file (or ansible_private_key_file), ~ expanded
	Become         bool     // ansible_become (true/false, yes/no, on/off, 1/0)
	BecomeUser     string   // ansible_become_user, default root
	SSHHostKeys    []string // kms_ssh_host_keys: pinned host keys, authorized_keys format
	KnownHostsFile string   // kms_ssh_known_hosts, ~ expanded; "" = the user's default files
	ProxyJump      string   // kms_ssh_proxy_jump: [user@]host[:port][,...] like ssh -J
	API            API      // kms_api: direct (default) or ssh
}

// KMSNode is the Key Manager layout of a host, from the kms_* variables with
// the defaults of docs/design.md §3.8.
type KMSNode struct {
	Host        string // inventory host name
	Endpoint    string // kms_endpoint: host:port as the cluster knows it; default ADDRESS:kms_port
	Port        int    // kms_port: the API port on the node, default 7373
	StoragePath string // kms_storage_path: the data directory, the only path ever wiped; default /mnt/minio-kms
	ConfigFile  string // kms_config_file, default /etc/minkms/config.yaml
	EnvFile     string // kms_env_file, default /etc/default/minkms
	CertsDir    string // kms_certs_dir, default /etc/minkms/certs
	Binary      string // kms_binary, default /usr/local/bin/minkms
	Service     string // kms_service: systemd unit, default minkms.service
	UnitFile    string // kms_unit_file: the unit's file, default /etc/systemd/system/SERVICE
	// Cluster is kms_cluster: the name of the cluster the node belongs
	// to, which names its lock; default kms.
	Cluster string
	// LeaseDir is kms_lease_dir: where kmsctl keeps the cluster's lease
	// on the node (lease-CLUSTER.json); default /var/lib/kmsctl.
	LeaseDir string
	User     string // kms_user: the service's system user, default minkms-user
	API      API    // kms_api: direct (default) or ssh
	CAFile   string // kms_ca_file: local CA file to verify the server, ~ expanded; "" if unset
	// APIAddress is kms_api_address: where kmsctl connects with kms_api
	// direct when that differs from Endpoint (NAT, a load balancer's
	// address); "" = Endpoint. The certificate is still verified for
	// Endpoint's host.
	APIAddress string
	// Where the admin API key and the HSM key are (never the keys): local
	// files (~ expanded) and commands (words, run without a shell) printing
	// them; "" and nil if unset. The environment comes first (see README).
	APIKeyFile    string   // kms_api_key_file
	APIKeyCommand []string // kms_api_key_command
	HSMKeyFile    string   // kms_hsm_key_file
	HSMKeyCommand []string // kms_hsm_key_command
	// The local files (~ expanded) installed on the node by `kmsctl
	// recover node`; "" if unset (a file already on the host is then kept).
	BinarySrc  string // kms_binary_src: the server binary
	TLSCertSrc string // kms_tls_cert_src: this node's own certificate
	TLSKeySrc  string // kms_tls_key_src: this node's own private key
	CASrc      string // kms_ca_src: the CA certificate
	ConfigSrc  string // kms_config_src: the config file (else rendered from a built-in template)
	// Where the binary, the CA and the config are copied from instead:
	// FromPeer, or "" if unset (never together with the *Src of the
	// same file).
	BinaryFrom string // kms_binary_from
	CAFrom     string // kms_ca_from
	ConfigFrom string // kms_config_from
}

// resolved is a host's merged variables with helpers that collect problems
// at the position of the variable that set each value.
type resolved struct {
	host  string
	vars  map[string]variable
	probs problems
}

func (inv *Inventory) resolved(host string, extra map[string]any) (*resolved, error) {
	vars, err := inv.resolve(host, extra)
	if err != nil {
		return nil, err
	}
	return &resolved{host: host, vars: vars}, nil
}

// fail records e for variable name.
func (r *resolved) fail(name string, v variable, e *yamlpos.Error) {
	e.Pos, e.Field = v.pos, "host "+r.host+": "+name
	r.probs.addErr(e)
}

// check validates the value of name (extra vars have not been checked yet)
// and reports whether it is set and valid.
func (r *resolved) check(names ...string) (variable, string, bool) {
	v, name, ok := pickVar(r.vars, names...)
	if !ok {
		return variable{}, "", false
	}
	if e := checkVar(name, v.value); e != nil {
		r.fail(name, v, e)
		return variable{}, name, false
	}
	return v, name, true
}

func (r *resolved) str(def string, names ...string) string {
	if v, _, ok := r.check(names...); ok {
		return v.value.(string)
	}
	return def
}

func (r *resolved) port(def int, names ...string) int {
	if v, _, ok := r.check(names...); ok {
		n, _ := asPort(v.value)
		return n
	}
	return def
}

func (r *resolved) localPath(names ...string) string {
	v, name, ok := r.check(names...)
	if !ok {
		return ""
	}
	p, err := expandHome(v.value.(string))
	if err != nil {
		r.fail(name, v, bad(err.Error(), "write an absolute path"))
		return ""
	}
	return p
}

// command reads a command variable's words, recording an invalid value.
func (r *resolved) command(name string) []string {
	v, _, ok := r.check(name)
	if !ok {
		return nil
	}
	argv, _ := AsCommand(v.value)
	return argv
}

// expandHome expands a leading ~ or ~/ to the current user's home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand ~ in %q: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// Resolve resolves host once: its variables (see Vars), SSH settings and Key
// Manager layout (see Node), with extra (-e) over the inventory. Every
// invalid value is reported, with the position of the variable that set it,
// in one *yamlpos.List.
func (inv *Inventory) Resolve(host string, extra map[string]any) (Host, error) {
	r, err := inv.resolved(host, extra)
	if err != nil {
		return Host{}, err
	}
	vars, err := inv.withMagic(host, plain(r.vars))
	if err != nil {
		return Host{}, err
	}
	api := r.api() // read by both views, reported once
	h := Host{Name: host, Vars: vars, SSH: r.sshSettings(api), KMS: r.kmsNode(api)}
	if err := r.probs.err(); err != nil {
		return Host{}, err
	}
	return h, nil
}

// api reads kms_api, recording an invalid value.
func (r *resolved) api() API { return API(r.str(string(DefaultAPI), VarAPI)) }

// sshSettings reads how to reach the host, recording invalid values. It
// refuses what kmsctl cannot honour (another connection type, a proxy in
// ssh arguments it does not read) rather than ignoring it.
func (r *resolved) sshSettings(api API) SSHSettings {
	c := SSHSettings{
		Host:           r.host,
		Address:        r.str(r.host, VarHost, legacyHost),
		Port:           r.port(0, VarPort, legacyPort),
		User:           r.str("", VarUser, legacyUser),
		PrivateKeyFile: r.localPath(VarPrivateKeyFile, legacyPrivateKey),
		BecomeUser:     r.str(DefaultBecomeUser, VarBecomeUser),
		KnownHostsFile: r.localPath(VarKnownHosts),
		ProxyJump:      r.str("", VarProxyJump),
		API:            api,
	}
	if v, ok := r.vars["ansible_connection"]; ok {
		if s, _ := v.value.(string); s != "ssh" && s != "smart" && s != "paramiko" {
			r.fail("ansible_connection", v, bad(fmt.Sprintf("connection type %v is not supported", FormatValue(v.value)),
				"kmsctl connects over SSH; remove ansible_connection for this host or leave it out of the pattern"))
		}
	}
	if c.ProxyJump == "" {
		for _, name := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args"} {
			v, ok := r.vars[name]
			if !ok {
				continue
			}
			if s, _ := v.value.(string); strings.Contains(s, "ProxyJump") || strings.Contains(s, "ProxyCommand") || strings.Contains(s, "-J") {
				r.fail(name, v, bad("kmsctl does not read "+name+", and this host would be reached without its proxy",
					"set kms_ssh_proxy_jump: [user@]bastion[:port] (or ProxyJump in ~/.ssh/config)"))
			}
		}
	}
	if v, _, ok := r.check(VarBecome); ok {
		c.Become, _ = asBool(v.value)
	}
	if v, _, ok := r.check(VarSSHHostKeys); ok {
		c.SSHHostKeys = asHostKeys(v.value)
	}
	return c
}

// Node returns host's Key Manager layout alone (Resolve returns it with the
// rest). extra holds -e variables. Every invalid value is reported (with the
// position of the variable that set it), and so is a storage path that
// contains the config file, env file, certs directory or binary, since
// wiping it would destroy them.
func (inv *Inventory) Node(host string, extra map[string]any) (KMSNode, error) {
	r, err := inv.resolved(host, extra)
	if err != nil {
		return KMSNode{}, err
	}
	n := r.kmsNode(r.api())
	if err := r.probs.err(); err != nil {
		return KMSNode{}, err
	}
	return n, nil
}

// kmsNode reads the Key Manager layout, recording invalid values.
func (r *resolved) kmsNode(api API) KMSNode {
	n := KMSNode{
		Host:        r.host,
		Endpoint:    r.str("", VarEndpoint),
		Port:        r.port(DefaultKMSPort, VarKMSPort),
		StoragePath: r.str("", VarStoragePath),
		ConfigFile:  r.str(DefaultConfigFile, VarConfigFile),
		EnvFile:     r.str(DefaultEnvFile, VarEnvFile),
		CertsDir:    r.str(DefaultCertsDir, VarCertsDir),
		Binary:      r.str(DefaultBinary, VarBinary),
		Service:     r.str(DefaultService, VarService),
		Cluster:     r.str(DefaultCluster, VarCluster),
		LeaseDir:    r.str(DefaultLeaseDir, VarLeaseDir),
		User:        r.str(DefaultKMSUser, VarKMSUser),
		API:         api,
		CAFile:      r.localPath(VarCAFile),
		APIAddress:  r.str("", VarAPIAddress),
		APIKeyFile:  r.localPath(VarAPIKeyFile),
		HSMKeyFile:  r.localPath(VarHSMKeyFile),
		BinarySrc:   r.localPath(VarBinarySrc),
		TLSCertSrc:  r.localPath(VarTLSCertSrc),
		TLSKeySrc:   r.localPath(VarTLSKeySrc),
		CASrc:       r.localPath(VarCASrc),
		ConfigSrc:   r.localPath(VarConfigSrc),
		BinaryFrom:  r.str("", VarBinaryFrom),
		CAFrom:      r.str("", VarCAFrom),
		ConfigFrom:  r.str("", VarConfigFrom),
	}
	n.UnitFile = r.str(path.Join(DefaultUnitDir, n.Service), VarUnitFile)
	n.APIKeyCommand = r.command(VarAPIKeyCommand)
	n.HSMKeyCommand = r.command(VarHSMKeyCommand)
	r.checkStorageHolds(n)
	r.checkFromOrSrc(n)
	return n
}
