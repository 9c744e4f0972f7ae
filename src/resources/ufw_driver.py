# labctl's ufw driver: runs a resource's ufw commands in ONE Python process, through ufw's own
# parser and frontend (what /usr/sbin/ufw does once per command), so N rules cost one interpreter
# start, not N. labctl appends `run([...])` with the commands, each an argv as /usr/sbin/ufw gets it.
import gettext
import shutil
import sys

try:
    import ufw.common
    import ufw.frontend
    import ufw.util
    from ufw.common import UFWError
except ImportError as e:
    sys.stderr.write("labctl: ufw's Python modules cannot be imported (%s): is the ufw package intact?\n" % e)
    sys.exit(1)

gettext.install(ufw.common.programName)


def show(argv):
    return "ufw " + " ".join(a if a and " " not in a and "'" not in a else repr(a) for a in argv)


def fail(argv, why, done):
    sys.stderr.write("labctl: `%s` failed: %s\n" % (show(argv), why))
    if done:
        sys.stderr.write("labctl: done before it: %s\n" % "; ".join(show(a) for a in done))
    else:
        sys.stderr.write("labctl: nothing was changed\n")
    sys.exit(1)


def enable(ui):
    """`ufw enable` from disabled, the way the host boots: the rules files get the logging
    section of the current level first, then ufw-init loads them in one iptables-restore per
    family. `ufw enable` loads the same files and then rebuilds the logging chains live, about
    75 iptables calls that end in the same ruleset. Chains already loaded: the CLI's own path."""
    b = ui.backend
    level = b.defaults.get("loglevel")
    if b.is_enabled() or level not in b.loglevels:
        return ui.set_enabled(True)
    rc, _ = ufw.util.cmd([b.iptables, "-L", "ufw-user-input", "-n"])
    if rc == 0:
        return ui.set_enabled(True)
    b.update_logging(level)  # disabled: writes user.rules and user6.rules only
    b.set_default(b.files["conf"], "ENABLED", "yes")
    rc, out = ufw.util.cmd([b.files["init"], "start"])
    if rc != 0:
        b.set_default(b.files["conf"], "ENABLED", "no")
        raise UFWError("problem running ufw-init\n%s" % out)
    return "Firewall is active and enabled on system startup"


def run(commands):
    # Every command is parsed before any runs: one ufw refuses changes nothing.
    parsed = []
    for argv in commands:
        try:
            parsed.append(ufw.frontend.parse_command(["ufw"] + argv))
        except (UFWError, ValueError, SystemExit) as e:
            fail(argv, getattr(e, "value", None) or str(e) or "ufw refused the command", [])
    # ufw checks its own program's permissions: argv[0] must be the real ufw, not `-`.
    sys.argv[0] = shutil.which("ufw") or "/usr/sbin/ufw"
    ui = ufw.frontend.UFWFrontend(False)
    lock = ufw.util.create_lock(lockfile="/run/ufw.lock", dryrun=False)
    done = []
    try:
        for argv, pr in zip(commands, parsed):
            try:
                if pr.action == "enable":
                    res = enable(ui)
                elif "rule" in pr.data:
                    res = ui.do_action(pr.action, pr.data["rule"], pr.data["iptype"], pr.force)
                else:
                    res = ui.do_action(pr.action, "", "", pr.force)
            except UFWError as e:
                fail(argv, e.value, done)
            except SystemExit:
                # ufw.util.error() printed the reason and exits.
                fail(argv, "see the ERROR above", done)
            if res:
                print(res)
            done.append(argv)
    finally:
        ufw.util.release_lock(lock)
