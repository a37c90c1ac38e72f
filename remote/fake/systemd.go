package fake

import (
	"fmt"
	"slices"
	"strings"
)

// Unit is the state of one systemd unit of the fake host. The zero Unit is
// a loaded unit, inactive and disabled, that starts and reloads.
type Unit struct {
	Active    bool // running: ActiveState=active, SubState=running
	Failed    bool // the last start failed: ActiveState=failed (until a start or reset-failed)
	Enabled   bool // UnitFileState=enabled
	Masked    bool // LoadState=masked, UnitFileState=masked: start, restart and enable fail
	FailStart bool // its process fails: start and restart fail and leave it failed
	NoReload  bool // it has no ExecReload: reload fails with status 3
}

// SetUnit creates or replaces the systemd unit name ("minkms" means
// "minkms.service", as for systemctl).
func (c *Conn) SetUnit(name string, u Unit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.units[unitName(name)] = &u
}

// Unit returns the state of the unit name and whether the host has it.
func (c *Conn) Unit(name string) (Unit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.units[unitName(name)]
	if !ok {
		return Unit{}, false
	}
	return *u, true
}

// unitName adds ".service" to a name without a unit type, as systemctl does.
func unitName(name string) string {
	for _, t := range []string{"service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope"} {
		if strings.HasSuffix(name, "."+t) {
			return name
		}
	}
	return name + ".service"
}

// showProperties are the properties `systemctl show --property=` answers,
// in the order systemd prints them (whatever the order asked for).
var showProperties = []string{"LoadState", "ActiveState", "SubState", "UnitFileState"}

// compileSystemctl emulates the systemctl command lines kmsctl sends:
// show --property=P,... (of showProperties), is-active, is-enabled, start,
// stop, restart, reload, enable, disable, mask, unmask, reset-failed (one
// unit each) and daemon-reload. Answers and state changes follow the
// transcript of systemd 252 in testdata/systemctl-transcript.txt, to which
// TestSystemctlTranscript holds them: systemctl cannot run on the
// conformance suite's in-process SSH server, which has no systemd.
// Informational messages on stderr of successful commands ("Created
// symlink ...") are not reproduced.
func compileSystemctl(args []string, _ bool) (prog, bool) {
	var props []string
	var words []string
	dashdash := false
	for _, a := range args {
		switch {
		case dashdash || !strings.HasPrefix(a, "-"):
			words = append(words, a)
		case a == "--":
			dashdash = true
		case strings.HasPrefix(a, "--property=") && props == nil:
			props = strings.Split(strings.TrimPrefix(a, "--property="), ",")
		default:
			return nil, false
		}
	}
	if len(words) == 0 {
		return nil, false
	}
	verb, units := words[0], words[1:]
	if props != nil && verb != "show" {
		return nil, false
	}
	switch verb {
	case "daemon-reload":
		return func(*shell) (r result) {
			if len(units) > 0 {
				r.fail(1, "Too many arguments.")
			}
			return r
		}, true
	case "show":
		for _, p := range props {
			if !slices.Contains(showProperties, p) {
				return nil, false
			}
		}
		if props == nil || len(units) != 1 {
			return nil, false
		}
	case "is-active", "is-enabled", "start", "stop", "restart", "reload", "enable", "disable", "mask", "unmask", "reset-failed":
		if len(units) != 1 {
			return nil, false
		}
	default:
		return nil, false
	}
	name := unitName(units[0])
	return func(sh *shell) result {
		u := sh.c.units[name]
		if verb == "show" {
			return result{stdout: showUnit(u, props)}
		}
		return systemctl(verb, name, u)
	}, true
}

// showUnit answers systemctl show for u (nil: no such unit).
func showUnit(u *Unit, props []string) string {
	v := map[string]string{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "UnitFileState": ""}
	if u != nil {
		v["LoadState"], v["UnitFileState"] = "loaded", "disabled"
		if u.Enabled {
			v["UnitFileState"] = "enabled"
		}
		if u.Masked {
			v["LoadState"], v["UnitFileState"] = "masked", "masked"
		}
		switch {
		case u.Active:
			v["ActiveState"], v["SubState"] = "active", "running"
		case u.Failed:
			v["ActiveState"], v["SubState"] = "failed", "failed"
		}
	}
	var b strings.Builder
	for _, p := range showProperties {
		if slices.Contains(props, p) {
			fmt.Fprintf(&b, "%s=%s\n", p, v[p])
		}
	}
	return b.String()
}

// systemctl runs verb on the unit name (u nil: no such unit).
func systemctl(verb, name string, u *Unit) (r result) {
	if u == nil {
		switch verb {
		case "is-active":
			r.stdout, r.code = "inactive\n", 3
		case "is-enabled":
			r.fail(1, "Failed to get unit file state for %s: No such file or directory", name)
		case "start", "restart", "reload":
			r.fail(5, "Failed to %s %s: Unit %s not found.", verb, name, name)
		case "stop":
			r.fail(5, "Failed to stop %s: Unit %s not loaded.", name, name)
		case "enable", "disable":
			r.fail(1, "Failed to %s unit: Unit file %s does not exist.", verb, name)
		default:
			r.unsupported = "systemctl " + verb + " of a unit the fake does not have"
		}
		return r
	}
	switch verb {
	case "is-active":
		switch {
		case u.Active:
			r.stdout = "active\n"
		case u.Failed:
			r.stdout, r.code = "failed\n", 3
		default:
			r.stdout, r.code = "inactive\n", 3
		}
	case "is-enabled":
		switch {
		case u.Masked:
			r.stdout, r.code = "masked\n", 1
		case u.Enabled:
			r.stdout = "enabled\n"
		default:
			r.stdout, r.code = "disabled\n", 1
		}
	case "start", "restart":
		switch {
		case u.Masked:
			r.fail(1, "Failed to %s %s: Unit %s is masked.", verb, name, name)
		case u.FailStart:
			u.Active, u.Failed = false, true
			r.fail(1, "Job for %s failed because the control process exited with error code.\n"+
				"See \"systemctl status %s\" and \"journalctl -xeu %s\" for details.", name, name, name)
		default:
			u.Active, u.Failed = true, false
		}
	case "stop":
		u.Active = false
	case "reload":
		switch {
		case u.Masked:
			r.unsupported = "systemctl reload of a masked unit"
		case u.NoReload:
			r.fail(3, "Failed to reload %s: Job type reload is not applicable for unit %s.", name, name)
		case !u.Active:
			r.fail(1, "%s is not active, cannot reload.", name)
		}
	case "enable":
		if u.Masked {
			r.fail(1, "Failed to enable unit: Unit file /etc/systemd/system/%s is masked.", name)
		} else {
			u.Enabled = true
		}
	case "disable":
		if !u.Masked {
			u.Enabled = false
		}
	case "mask":
		u.Masked = true
	case "unmask":
		u.Masked = false
	case "reset-failed":
		u.Failed = false
	}
	return r
}
