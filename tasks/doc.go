// Package tasks is kmsctl's task engine: it runs small, idempotent tasks
// across hosts with bounded parallelism. A task names a Module, looked up in
// a Registry (package modules registers the general ones: command, copy,
// service, ...); every module can say read-only what it would change (check
// mode). The engine reaches hosts through the Conn interface only (package
// remote satisfies it without importing this package).
//
// # Running plays
//
// Engine.Run runs plays in order. Within a play the hosts run each task
// together (at most Engine.Forks at a time) before the next task starts; a
// play with serial runs the whole play, handlers included, batch after
// batch. With any_errors_fatal (the default) the first task on which a host
// fails ends the play and the run, after that task finished everywhere;
// with it off, failed hosts drop out and the others go on. Unreachable hosts
// (a Connect error, or an error with Unreachable() true) drop out without
// counting as failed and without stopping the play.
//
// Handlers run at the end of each batch, once, in the order they are
// defined, on the hosts that notified them with a changed result - also on
// hosts that failed a later task, and also after a cancellation (with a
// fresh context bounded by Engine.HandlerTimeout), so that a pushed
// configuration is never left without its restart. A changed result names
// the handlers it notified (Event.Notified). A task that a cancellation (or
// the handler timeout after it) cuts short ends as StatusInterrupted: counted
// in HostStats.Interrupted, neither failed nor unreachable, and not among
// the RunError's host errors.
//
// # Variables
//
// A task sees, from lowest to highest precedence: the host's inventory
// variables (Host.Vars), the play's vars, registered results and set_fact
// facts of earlier tasks on that host (kept for the whole run), and the
// extra vars (-e). Also defined: inventory_hostname, ansible_check_mode,
// ansible_diff_mode, and hostvars (every play host's inventory and play
// variables with the extra vars over them, by host name). String variables
// may themselves be templates.
//
// A registered result has rc, stdout, stdout_lines, stderr, stderr_lines,
// changed, failed, skipped, msg, attempts (with until), and per module
// fields (dest, checksum, state, enabled, ...). In changed_when,
// failed_when and until, the current result is available as "result" and
// under the register name.
//
// # Templates
//
// String arguments (also inside lists and maps) are rendered per host with
// pongo2, a Jinja-like template language: {{ var }}, {{ a.b }}, {{ l[0] }},
// {{ x|default:"y" }}, {% if %}, {% for %}. Jinja's one-argument filter
// calls are accepted too and rewritten for pongo2 ({{ x | default('y') }},
// {{ l | join(",") }}, {{ s | int }}, {{ x | d('y') }}). HTML
// autoescaping is off. Printing an undefined variable fails the task, as
// in Ansible (so an env file never gets an empty key); a tag with a
// default filter may use undefined variables. The template module renders
// whole files the same way.
//
// # Expressions
//
// when, changed_when, failed_when, until and assert's that are expressions
// of github.com/expr-lang/expr: result.rc == 0, 'ERROR' in result.stderr
// (in also finds substrings, list elements and map keys), n > 2 and not
// failed, len(r.stdout_lines) == 3, r.stdout | length() > 0,
// x | default("y"). An undefined variable is nil (use a?.b to read a
// field of a possibly undefined map); defined("a.b") tests existence, and
// Ansible's "a is defined" / "a is not defined" / "a is undefined" are
// rewritten to it. An expression written as one "{{ ... }}" is evaluated
// without the braces. The result must be true or false (nil counts as
// false). A
// variable named like an expr builtin (count, last, max, keys, ...) means
// the variable; the builtin stays usable where no such variable exists.
//
// # Loops, run_once, check_mode
//
// Task.Loop runs the module once per item (variable "item", or LoopVar);
// when, changed_when, failed_when and until apply per item. Task.RunOnce
// runs a task on the batch's first host only and shares its registered
// result and facts with the others. Task.CheckMode overrides --check for
// one task (false: a read-only probe that must run even in check mode).
//
// # Check mode and diff
//
// With Engine.Check the engine calls only Module.Plan, which reads but
// never writes; command and shell are skipped unless creates/removes make
// the outcome knowable; until loops run once. With Engine.Diff, copy and
// template report unified diffs of content changes, except for secret:
// true files and no_log tasks.
//
// # Secrets
//
// no_log replaces a task's messages, output and diff in events and errors.
// Engine.Redactor masks registered secret values everywhere else: the
// values of variables named as secrets (Engine.Secret), and every value
// computed from one. To know those, templates and expressions are
// evaluated a second time with every secret disguised (letters and digits
// shifted); a result that differs depends on a secret and is registered
// ({{ kms_api_key | lower }} is masked like the key; {% if kms_api_key %}
// yes{% endif %} is not). Facts set from secrets are secret too. A module
// that reads a secret itself (a key from a file or a command) registers it
// with Env.AddSecret as soon as it has it.
//
// Secrets belong in module arguments that never reach a command line
// (command's stdin, copy's content). An argument a module puts on a
// remote command line (ArgSpec.CmdLine: commands, paths, unit and user
// names), where every user of the host can read it in /proc/PID/cmdline,
// must not read a secret: Run refuses such a task before any host is
// touched (a *RefusedError), or, when the value shows only while the play
// runs, on the host before the module runs. Copy content and template
// output built from a secret are written 0600 unless a mode is given.
//
// # Before any host is touched
//
// Run first checks every task (Validate): modules, argument types and
// enums, templates and expressions parse, secrets stay off command lines,
// local src files exist; arguments are rendered with the variables known
// before the run (inventory, play and extra vars), those that read
// variables set while the play runs are checked on the host.
package tasks
