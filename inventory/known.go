package inventory

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/shlex"

	"github.com/kmsctl/kmsctl/safepath"
	"github.com/kmsctl/kmsctl/yamlpos"
)

// Variables kmsctl reads. Ansible connection variables keep their Ansible
// meaning; kms_* variables describe the Key Manager node (docs/design.md §3.8).
const (
	VarHost           = "ansible_host"
	VarPort           = "ansible_port"
	VarUser           = "ansible_user"
	VarPrivateKeyFile = "ansible_ssh_private_key_file"
	VarBecome         = "ansible_become"
	VarBecomeUser     = "ansible_become_user"
	VarGroupPriority  = "ansible_group_priority"

	VarSSHHostKeys   = "kms_ssh_host_keys"
	VarKnownHosts    = "kms_ssh_known_hosts"
	VarProxyJump     = "kms_ssh_proxy_jump"
	VarAPI           = "kms_api"
	VarEndpoint      = "kms_endpoint"
	VarKMSPort       = "kms_port"
	VarStoragePath   = "kms_storage_path"
	VarConfigFile    = "kms_config_file"
	VarEnvFile       = "kms_env_file"
	VarCertsDir      = "kms_certs_dir"
	VarBinary        = "kms_binary"
	VarService       = "kms_service"
	VarUnitFile      = "kms_unit_file"
	VarCluster       = "kms_cluster"
	VarLeaseDir      = "kms_lease_dir"
	VarKMSUser       = "kms_user"
	VarCAFile        = "kms_ca_file"
	VarAPIAddress    = "kms_api_address"
	VarAPIKeyFile    = "kms_api_key_file"
	VarAPIKeyCommand = "kms_api_key_command"
	VarHSMKeyFile    = "kms_hsm_key_file"
	VarHSMKeyCommand = "kms_hsm_key_command"
	// The local sources of the node's files, installed by the recovery
	// (and provisioning) commands.
	VarBinarySrc  = "kms_binary_src"
	VarTLSCertSrc = "kms_tls_cert_src"
	VarTLSKeySrc  = "kms_tls_key_src"
	VarCASrc      = "kms_ca_src"
	VarConfigSrc  = "kms_config_src"
	// Where the binary, the CA and the config come from instead of a local
	// source: FromPeer (a healthy member of the node's cluster). Never the
	// node's own certificate and key, which carry its name.
	VarBinaryFrom = "kms_binary_from"
	VarCAFrom     = "kms_ca_from"
	VarConfigFrom = "kms_config_from"
	// The node's own certificate and key are never copied from a peer:
	// these names are refused with every value.
	varTLSCertFrom = "kms_tls_cert_from"
	varTLSKeyFrom  = "kms_tls_key_from"
	// VarAPIKey and VarHSMKey are refused with every value: the keys come
	// from the environment, a 0600 file or a command (KeySource), never
	// from a variable.
	VarAPIKey        = "kms_api_key"
	VarHSMKey        = "kms_hsm_key"
	legacyHost       = "ansible_ssh_host"
	legacyPort       = "ansible_ssh_port"
	legacyUser       = "ansible_ssh_user"
	legacyPrivateKey = "ansible_private_key_file"
)

// Defaults of the Key Manager layout: the vendor's Linux layout (docs/design.md §3.8).
const (
	DefaultKMSPort     = 7373
	DefaultStoragePath = "/mnt/minio-kms"
	DefaultConfigFile  = "/etc/minkms/config.yaml"
	DefaultEnvFile     = "/etc/default/minkms"
	DefaultCertsDir    = "/etc/minkms/certs"
	DefaultBinary      = "/usr/local/bin/minkms"
	DefaultService     = "minkms.service"
	DefaultUnitDir     = "/etc/systemd/system"
	// DefaultLeaseDir is where a node keeps kmsctl's cluster leases
	// (lease-CLUSTER.json), outside the storage path.
	DefaultLeaseDir = "/var/lib/kmsctl"
	// DefaultCluster is the cluster a host belongs to without kms_cluster:
	// the inventory group `kmsctl status` reads by default.
	DefaultCluster    = "kms"
	DefaultKMSUser    = "minkms-user"
	DefaultBecomeUser = "root"
	DefaultAPI        = APIDirect
)

// API says how kmsctl reaches a node's Key Manager API.
type API string

// The ways to reach the Key Manager API.
const (
	APIDirect API = "direct" // TLS to kms_endpoint from the machine running kmsctl
	APISSH    API = "ssh"    // through the node's SSH connection to its local kms_port
)

// checker validates one known variable's value; it returns nil or a *yamlpos.Error
// without position and field (the caller fills them in).
type checker func(v any) *yamlpos.Error

// knownVars maps each variable kmsctl interprets to its check. Variables not
// listed here are passed through unchecked.
var knownVars = map[string]checker{
	VarHost:           checkAddress,
	legacyHost:        checkAddress,
	VarPort:           checkPort,
	legacyPort:        checkPort,
	VarUser:           checkLoginName,
	legacyUser:        checkLoginName,
	VarPrivateKeyFile: checkLocalPath,
	legacyPrivateKey:  checkLocalPath,
	VarBecome:         checkBool,
	VarBecomeUser:     checkLoginName,
	VarGroupPriority:  checkInt,
	VarSSHHostKeys:    checkHostKeys,
	VarKnownHosts:     checkLocalPath,
	VarProxyJump:      checkProxyJump,
	VarAPI:            checkAPI,
	VarEndpoint:       checkEndpoint,
	VarKMSPort:        checkPort,
	VarStoragePath:    checkStoragePath,
	VarConfigFile:     checkRemoteFile,
	VarEnvFile:        checkRemoteFile,
	VarCertsDir:       checkRemoteDir,
	VarBinary:         checkRemoteFile,
	VarService:        checkService,
	VarUnitFile:       checkRemoteFile,
	VarCluster:        checkCluster,
	VarLeaseDir:       checkRemoteDir,
	VarKMSUser:        checkLoginName,
	VarCAFile:         checkLocalPath,
	VarAPIAddress:     checkEndpoint,
	VarAPIKeyFile:     checkLocalPath,
	VarAPIKeyCommand:  checkCommand,
	VarHSMKeyFile:     checkLocalPath,
	VarHSMKeyCommand:  checkCommand,
	VarBinarySrc:      checkLocalPath,
	VarTLSCertSrc:     checkLocalPath,
	VarTLSKeySrc:      checkLocalPath,
	VarCASrc:          checkLocalPath,
	VarConfigSrc:      checkLocalPath,
	VarBinaryFrom:     checkFrom,
	VarCAFrom:         checkFrom,
	VarConfigFrom:     checkFrom,
	varTLSCertFrom:    refuseOwnFrom(VarTLSCertSrc),
	varTLSKeyFrom:     refuseOwnFrom(VarTLSKeySrc),
	VarAPIKey:         refuseKey(EnvAPIKey, VarAPIKeyFile, VarAPIKeyCommand),
	VarHSMKey:         refuseKey(EnvHSMKey, VarHSMKeyFile, VarHSMKeyCommand),
}

// The environment variables that hold the keys (the vendor's names).
const (
	EnvAPIKey = "MINIO_KMS_API_KEY"
	EnvHSMKey = "MINIO_KMS_HSM_KEY"
)

// refuseKey is the check of a variable that would hold a key itself: every
// value is refused, with where the key belongs instead.
func refuseKey(env, file, command string) checker {
	return func(any) *yamlpos.Error {
		return &yamlpos.Error{
			Problem: "this key is never a variable's value: inventories and vars files are read by many and copied widely",
			Hint:    fmt.Sprintf("export %s, or write the key to a file only you can read (chmod 600 FILE) named by %s, or name a command printing it with %s", env, file, command),
			Err:     refusal("a Key Manager key given as a variable's value"),
		}
	}
}

// checkCommand checks a command run on the machine running kmsctl to print
// a key: a string of words (quoted as in a shell), or a list of words. It
// is run without a shell.
func checkCommand(v any) *yamlpos.Error {
	argv, e := AsCommand(v)
	if e != nil {
		return e
	}
	if argv[0] == "" || strings.ContainsFunc(strings.Join(argv, " "), func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("command contains control characters or starts with an empty word", "write e.g. pass show kms/api-key")
	}
	return nil
}

// AsCommand returns a command variable's words: a string split like a
// shell splits words (quotes and backslashes; no variables, globs or
// operators: nothing is run through a shell), or a list of strings taken as
// they are.
func AsCommand(v any) ([]string, *yamlpos.Error) {
	hint := "write e.g. \"pass show kms/api-key\", or a list of words: [pass, show, kms/api-key]"
	switch x := v.(type) {
	case string:
		f, err := shlex.Split(x)
		if err != nil {
			return nil, bad("cannot split the command into words: "+err.Error(), hint)
		}
		if len(f) == 0 {
			return nil, bad("must not be empty", hint)
		}
		return f, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, w := range x {
			s, ok := w.(string)
			if !ok {
				return nil, bad("must be a list of words (strings), got an element that is "+typeName(w), hint)
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			return nil, bad("must not be empty", hint)
		}
		return out, nil
	}
	return nil, bad("must be a command, got "+typeName(v), hint)
}

// checkVar validates name's value if name is a known variable.
func checkVar(name string, v any) *yamlpos.Error {
	c, ok := knownVars[name]
	if !ok {
		return nil
	}
	if s, ok := v.(string); ok && strings.Contains(s, "{{") {
		return &yamlpos.Error{Problem: "templates are not supported in connection and Key Manager variables",
			Hint: "write the literal value"}
	}
	e := c(v)
	if e != nil && IsSecret(name) && e.Err == nil {
		e.Problem = "invalid value" // never echo a secret's value
	}
	return e
}

// suggestKnown returns the known kms_ or ansible_ variable that name is a
// likely misspelling of, or "". A misspelt kms_storage_path would otherwise
// silently fall back to the default path.
func suggestKnown(name string) string {
	if _, ok := knownVars[name]; ok {
		return ""
	}
	if !strings.HasPrefix(name, "kms_") && !strings.HasPrefix(name, "ansible_") {
		return ""
	}
	best, bestD := "", 3
	for k := range knownVars {
		if d := editDistance(name, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if bestD > 2 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func bad(problem, hint string) *yamlpos.Error { return &yamlpos.Error{Problem: problem, Hint: hint} }

// asString returns a non-empty string value.
func asString(v any) (string, *yamlpos.Error) {
	s, ok := v.(string)
	if !ok {
		return "", bad("must be a string, got "+typeName(v), "quote the value")
	}
	if s == "" {
		return "", bad("must not be empty", "set a value or remove the variable")
	}
	return s, nil
}

// asInt accepts an integer or a string of digits, as Ansible does.
func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int(x), true
		}
	case uint64:
		if x <= math.MaxInt32 {
			return int(x), true
		}
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		return n, err == nil
	}
	return 0, false
}

func checkInt(v any) *yamlpos.Error {
	if _, ok := asInt(v); !ok {
		if s, isStr := v.(string); isStr {
			return bad(fmt.Sprintf("must be an integer, got %q", s), "write a whole number")
		}
		return bad(fmt.Sprintf("must be an integer, got %s", typeName(v)), "write a whole number")
	}
	return nil
}

func asPort(v any) (int, *yamlpos.Error) {
	n, ok := asInt(v)
	if !ok {
		if s, isStr := v.(string); isStr {
			return 0, bad(fmt.Sprintf("must be a port number, got %q", s), "write a number from 1 to 65535")
		}
		return 0, bad("must be a port number, got "+typeName(v), "write a number from 1 to 65535")
	}
	if n < 1 || n > 65535 {
		return 0, bad(fmt.Sprintf("port %d out of range", n), "write a number from 1 to 65535")
	}
	return n, nil
}

func checkPort(v any) *yamlpos.Error { _, e := asPort(v); return e }

// asBool accepts booleans and Ansible's boolean spellings (yes/no, on/off,
// true/false, y/n, t/f, 1/0, any case).
func asBool(v any) (bool, *yamlpos.Error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int:
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "yes", "y", "on", "true", "t", "1":
			return true, nil
		case "no", "n", "off", "false", "f", "0":
			return false, nil
		}
		return false, bad(fmt.Sprintf("must be a boolean, got %q", x), "write true or false (yes/no also work)")
	}
	return false, bad("must be a boolean, got "+typeName(v), "write true or false (yes/no also work)")
}

func checkBool(v any) *yamlpos.Error { _, e := asBool(v); return e }

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0
}

func checkAddress(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if strings.Contains(s, ":") {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			return nil
		}
		return bad(fmt.Sprintf("invalid address %q", s), "write a host name or IP address, without a port (set ansible_port)")
	}
	if len(s) > 253 || !addressRe.MatchString(s) {
		return bad(fmt.Sprintf("invalid address %q", s), "write a host name or IP address")
	}
	return nil
}

// addressRe matches a DNS name or an IPv4 address.
var addressRe = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_.])?$`)

var loginNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*\$?$`)

func checkLoginName(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if len(s) > 64 || !loginNameRe.MatchString(s) {
		return bad(fmt.Sprintf("invalid user name %q", s), "use letters, digits, '.', '_' and '-'")
	}
	return nil
}

// checkLocalPath checks a path on the machine running kmsctl (~ allowed).
func checkLocalPath(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("path contains control characters", "write a plain path")
	}
	return nil
}

func checkAPI(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if API(s) != APIDirect && API(s) != APISSH {
		return bad(fmt.Sprintf("must be direct or ssh, got %q", s),
			"direct: kmsctl connects to kms_endpoint; ssh: through the node's SSH connection")
	}
	return nil
}

func checkEndpoint(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" || hasSpaceOrControl(h) || strings.ContainsAny(h, "/@") {
		return bad(fmt.Sprintf("must be host:port, got %q", s), "write e.g. kms1.example.com:7373 ([::1]:7373 for IPv6)")
	}
	if _, e := asPort(p); e != nil {
		return bad(fmt.Sprintf("invalid port in %q", s), "write a port from 1 to 65535")
	}
	return nil
}

func checkHostKeys(v any) *yamlpos.Error {
	var keys []string
	switch x := v.(type) {
	case string:
		keys = []string{x}
	case []any:
		for _, k := range x {
			s, ok := k.(string)
			if !ok {
				return bad("must be a list of keys (strings), got an element that is "+typeName(k), "quote each key")
			}
			keys = append(keys, s)
		}
	default:
		return bad("must be a list of host keys, got "+typeName(v), "write keys in authorized_keys format: - ssh-ed25519 AAAA...")
	}
	if len(keys) == 0 {
		return bad("empty list of host keys", "pin at least one key or remove the variable")
	}
	for i, k := range keys {
		if why := hostKeyShape(k); why != "" {
			return bad(fmt.Sprintf("key %d is not in authorized_keys format: %s", i+1, why),
				"copy the line from the host's /etc/ssh/ssh_host_*_key.pub")
		}
	}
	return nil
}

// hostKeyShape checks that k looks like an authorized_keys line, "TYPE BASE64 [COMMENT]",
// and says why not. The key itself is parsed by the SSH transport before any host is
// touched (remote.CheckHostKeys); the inventory stays free of SSH libraries.
func hostKeyShape(k string) string {
	f := strings.Fields(k)
	switch {
	case len(f) < 2:
		return "want \"TYPE BASE64 [COMMENT]\", e.g. ssh-ed25519 AAAA..."
	case !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") && !strings.HasPrefix(f[0], "sk-"):
		return fmt.Sprintf("%q is not a key type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, ...)", f[0])
	}
	if _, err := base64.StdEncoding.DecodeString(f[1]); err != nil {
		return "the key data after " + f[0] + " is not base64"
	}
	return ""
}

// asHostKeys returns kms_ssh_host_keys as a list (a single string is one key).
func asHostKeys(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{strings.TrimSpace(x)}
	case []any:
		out := make([]string, 0, len(x))
		for _, k := range x {
			if s, ok := k.(string); ok {
				out = append(out, strings.TrimSpace(s))
			}
		}
		return out
	}
	return nil
}

func checkProxyJump(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if hasSpaceOrControl(s) {
		return bad(fmt.Sprintf("invalid proxy jump %q: contains spaces", s), "write [user@]host[:port], comma-separated for several hops")
	}
	for hop := range strings.SplitSeq(s, ",") {
		hp := hop
		if i := strings.LastIndex(hp, "@"); i >= 0 {
			hp = hp[i+1:]
		}
		if hp == "" || strings.HasPrefix(hop, "-") {
			return bad(fmt.Sprintf("invalid proxy jump hop %q", hop), "write [user@]host[:port], comma-separated for several hops")
		}
	}
	return nil
}

var remotePathRe = regexp.MustCompile(`^/[A-Za-z0-9._/@+,:=-]*$`)

// asRemotePath checks an absolute, clean path on a node, free of characters
// a shell would interpret.
func asRemotePath(v any) (string, *yamlpos.Error) {
	s, e := asString(v)
	if e != nil {
		return "", e
	}
	if !strings.HasPrefix(s, "/") {
		return "", bad(fmt.Sprintf("must be an absolute path, got %q", s), "start the path with /")
	}
	if slices.Contains(strings.Split(s, "/"), "..") {
		return "", bad(fmt.Sprintf("path %q contains ..", s), "write the path without ..")
	}
	if !remotePathRe.MatchString(s) {
		return "", bad(fmt.Sprintf("path %q contains unsupported characters", s), "use letters, digits and . _ - / @ + , : =")
	}
	if c := path.Clean(s); c != s {
		return "", bad(fmt.Sprintf("path %q is not in clean form", s), "write it as "+c)
	}
	if s == "/" {
		return "", bad("path must not be /", "name a file or directory below /")
	}
	return s, nil
}

func checkRemoteFile(v any) *yamlpos.Error { _, e := asRemotePath(v); return e }

// systemDirs are directories that are never a certificates directory of
// their own (kms_certs_dir); the storage path has the stricter rule of
// package safepath.
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr",
	"/home", "/lost+found", "/media", "/mnt", "/opt", "/root", "/snap", "/srv", "/tmp",
	"/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log", "/var/mail", "/var/opt", "/var/spool", "/var/tmp"}

func checkRemoteDir(v any) *yamlpos.Error {
	p, e := asRemotePath(v)
	if e != nil {
		return e
	}
	if slices.Contains(systemDirs, p) {
		return bad(fmt.Sprintf("%s is a system directory", p), "name a directory of its own, e.g. /etc/minkms/certs")
	}
	return nil
}

// storageHint is what to do about a refused storage path.
const storageHint = "name the Key Manager's own data directory, e.g. /mnt/minio-kms"

// checkStoragePath is the check of the one path kmsctl wipes: absolute,
// clean, and allowed by the dangerous-path rule (package safepath). That it
// does not hold the node's own files is checked on the resolved layout
// (checkStorageHolds).
// An absolute path the rule refuses is a refusal (the CLI exits 4), even
// when it is also unclean; other malformed values are invalid input.
func checkStoragePath(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if path.IsAbs(s) {
		if err := safepath.Check(s, nil); err != nil {
			return refusedStorage(err)
		}
	}
	_, e = asRemotePath(s)
	return e
}

// refusedStorage is the problem of a storage path that safepath refused; it
// wraps the refusal (the CLI exits 4 for it).
func refusedStorage(err error) *yamlpos.Error {
	var se *safepath.Error
	if !errors.As(err, &se) {
		return bad("storage path: "+err.Error(), storageHint)
	}
	p := se.Checked
	if se.Path != se.Checked {
		p = fmt.Sprintf("%s (written %s)", se.Checked, se.Path)
	}
	return &yamlpos.Error{Problem: fmt.Sprintf("storage path %s is refused: %s", p, se.Reason), Hint: storageHint, Err: err}
}

// FromPeer is the value of kms_binary_from, kms_ca_from and
// kms_config_from that copies the file from a healthy member of the
// node's cluster (for `recover node`, the survivor its edit goes through).
const FromPeer = "peer"

// checkFrom checks a kms_*_from variable: peer is the only source.
func checkFrom(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if s != FromPeer {
		return bad(fmt.Sprintf("must be %s, got %q", FromPeer, s),
			"peer copies the file from a healthy member of the cluster; for a file on this machine, use the kms_*_src variable instead")
	}
	return nil
}

// refuseOwnFrom is the check of kms_tls_cert_from and kms_tls_key_from:
// a node's own certificate and key carry its name, a peer's are not its.
func refuseOwnFrom(src string) checker {
	return func(any) *yamlpos.Error {
		return bad("a node's own certificate and key are never copied from a peer: they carry the peer's name",
			"name this node's own file with "+src)
	}
}

// checkFromOrSrc reports a file given both a local source and a peer.
func (r *resolved) checkFromOrSrc(n KMSNode) {
	for _, f := range []struct{ from, src, fromVal, srcVal string }{
		{VarBinaryFrom, VarBinarySrc, n.BinaryFrom, n.BinarySrc},
		{VarCAFrom, VarCASrc, n.CAFrom, n.CASrc},
		{VarConfigFrom, VarConfigSrc, n.ConfigFrom, n.ConfigSrc},
	} {
		if f.fromVal != "" && f.srcVal != "" {
			r.fail(f.from, r.vars[f.from], bad(fmt.Sprintf("%s and %s (set at %s) both name where the file comes from", f.from, f.src, r.vars[f.src].pos),
				"keep one: "+f.src+" for a file on this machine, "+f.from+": peer for a copy from a healthy member"))
		}
	}
}

// checkStorageHolds reports a storage path that is or contains the node's
// config file, env file, certificates directory, binary or lease directory (set by the
// variables of n), since wiping it would destroy them: the safepath rule
// with those files protected, each named with where it was set.
func (r *resolved) checkStorageHolds(n KMSNode) {
	if n.StoragePath == "" {
		return
	}
	for _, other := range []struct{ name, path string }{
		{VarConfigFile, n.ConfigFile}, {VarEnvFile, n.EnvFile}, {VarCertsDir, n.CertsDir}, {VarBinary, n.Binary}, {VarLeaseDir, n.LeaseDir},
	} {
		if err := safepath.Check(n.StoragePath, []string{other.path}); err != nil {
			r.fail(VarStoragePath, r.vars[VarStoragePath], &yamlpos.Error{
				Problem: fmt.Sprintf("storage path %s contains %s %s (set at %s); wiping it would destroy it", n.StoragePath, other.name, other.path, r.vars[other.name].pos),
				Hint:    "keep the data directory separate from config, certs and binary",
				Err:     err,
			})
		}
	}
}

var serviceRe = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)

func checkService(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if len(s) > 255 || !serviceRe.MatchString(s) || strings.HasPrefix(s, "-") {
		return bad(fmt.Sprintf("invalid systemd unit name %q", s), "write e.g. minkms.service or minkms")
	}
	return nil
}

var clusterRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// checkCluster checks a cluster's name (kms_cluster): a simple name, since
// it names kmsctl's lock files.
func checkCluster(v any) *yamlpos.Error {
	s, e := asString(v)
	if e != nil {
		return e
	}
	if !clusterRe.MatchString(s) {
		return bad(fmt.Sprintf("invalid cluster name %q", s), "use at most 64 letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. kms or kms-eu")
	}
	return nil
}
