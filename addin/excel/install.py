"""Install the nearmiss add-in for this user: ``python -m addin.excel.install``.

Run it with the Python that has nearmiss installed (``install-addin.ps1`` / ``install-addin.sh``
do both steps).  It

1. copies ``nearmiss.xlam`` into Excel's startup folder (XLSTART), so Excel opens it every time;
2. writes the add-in's user settings file (``myaddin.conf``, see :func:`addin.xl.submit.user_conf_path`):
   ``Interpreter_Win`` or ``Interpreter_Mac`` (this Python), ``PYTHONPATH`` (this folder, where the
   ribbon's ``nearmiss.py`` lives), ``UDF Modules`` and, when given or typed in, the server
   address, the site's token and the site's code, name and setting;
3. on a Mac, installs xlwings' RunPython AppleScript (``xlwings runpython install``), without
   which Excel for Mac cannot start Python.

Quit Excel first: Windows does not let a file Excel has open be replaced.  ``xlwings addin
install -f nearmiss.xlam`` does step 1 too (it asks Excel where XLSTART is), but not step 2.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

from addin.xl.submit import (
    ADDIN_NAME, SERVER_KEY, SITE_KEYS, TOKEN_KEY, read_conf_file, user_conf_path, write_conf_file,
)

HERE = Path(__file__).resolve().parent
ADDIN = HERE / ADDIN_NAME
UDF_MODULES = "addin.xl.udfs"


def xlstart_dir(platform: str | None = None, home: str | Path | None = None,
                environ: dict | None = None) -> Path | None:
    """Excel's per-user startup folder; None where there is no desktop Excel (Linux)."""
    platform = platform or sys.platform
    home = Path(home) if home is not None else Path.home()
    environ = os.environ if environ is None else environ
    if platform.startswith("win"):
        appdata = environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return Path(appdata) / "Microsoft" / "Excel" / "XLSTART"
    if platform == "darwin":
        return (home / "Library" / "Group Containers" / "UBF8T346G9.Office" / "User Content.localized"
                / "Startup.localized" / "Excel")
    return None


def interpreter(platform: str | None = None, executable: str | None = None) -> tuple[str, str]:
    """("Interpreter_Win" or "Interpreter_Mac", the path of this Python)."""
    platform = platform or sys.platform
    executable = executable or sys.executable
    return ("Interpreter_Mac" if platform == "darwin" else "Interpreter_Win"), executable


def settings(*, platform: str | None = None, executable: str | None = None, server_url: str = "", token: str = "",
             site_code: str = "", site_name: str = "", setting: str = "") -> dict[str, str]:
    key, python = interpreter(platform, executable)
    values = {key: python, "PYTHONPATH": str(HERE), "UDF Modules": UDF_MODULES}
    extra = {SERVER_KEY: server_url, TOKEN_KEY: token, SITE_KEYS["site_code"]: site_code.upper(),
             SITE_KEYS["site_name"]: site_name, SITE_KEYS["setting"]: setting}
    values.update({k: v for k, v in extra.items() if v})
    return values


def version_warning(addin: Path = ADDIN) -> str | None:
    """A warning when this Python's xlwings is not the version the add-in's VBA came from."""
    import xlwings

    from .build_addin import VERSION_KEY, addin_settings

    built = addin_settings(addin).get(VERSION_KEY)
    if not built or built == xlwings.__version__:
        return None
    return (f"Warning: the add-in's VBA comes from xlwings {built}, but this Python has xlwings "
            f"{xlwings.__version__}. RunPython needs the same version on both sides (on a Mac it fails "
            f"outright). Run `python -m pip install xlwings=={built}`, or rebuild the add-in with "
            "`python -m addin.excel.build_addin` using this Python's xlwings.")


def install(*, xlstart: str | Path | None = None, conf: str | Path | None = None, platform: str | None = None,
            executable: str | None = None, runpython: bool = True, **site: str) -> tuple[Path, Path]:
    """Copy the add-in and write the settings; returns (installed add-in, settings file)."""
    platform = platform or sys.platform
    target_dir = Path(xlstart) if xlstart else xlstart_dir(platform)
    if target_dir is None:
        raise SystemExit("There is no desktop Excel on this system; give --xlstart DIR to copy the add-in anyway.")
    if not ADDIN.is_file():
        raise SystemExit(f"{ADDIN} is missing: build it with `python -m addin.excel.build_addin`.")
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / ADDIN_NAME
    try:
        shutil.copyfile(ADDIN, target)
    except PermissionError:
        raise SystemExit(f"Cannot replace {target}: quit Excel (all windows) and run the installer again.") from None
    conf_path = Path(conf) if conf else user_conf_path(platform)
    write_conf_file(conf_path, settings(platform=platform, executable=executable, **site))
    if runpython and platform == "darwin":  # pragma: no cover - Mac only
        subprocess.run([sys.executable, "-m", "xlwings.cli", "runpython", "install"], check=False)
    return target, conf_path


def _prompt(label: str, current: str, secret: bool = False) -> str:
    if current or not sys.stdin.isatty():
        return current
    ask = getpass.getpass if secret else input
    return ask(f"{label} (Enter to skip): ").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m addin.excel.install", description=__doc__.split("\n")[0])
    parser.add_argument("--xlstart", help="Excel's startup folder (default: the usual one for this user)")
    parser.add_argument("--conf", help="settings file to write (default: where the add-in looks)")
    parser.add_argument("--server-url", default="", help="the area server's address, e.g. https://nearmiss.example")
    parser.add_argument("--token", default="", help="this site's token (asked for when not given)")
    parser.add_argument("--site-code", default="")
    parser.add_argument("--site-name", default="")
    parser.add_argument("--setting", default="", help="care_home, homecare, supported_living, complex_care_at_home")
    parser.add_argument("--no-prompt", action="store_true", help="never ask; leave out what is not given")
    args = parser.parse_args(argv)
    conf_path = Path(args.conf) if args.conf else user_conf_path()
    known = read_conf_file(conf_path)
    site = {"server_url": args.server_url or known.get(SERVER_KEY, ""), "token": args.token or known.get(TOKEN_KEY, ""),
            "site_code": args.site_code or known.get(SITE_KEYS["site_code"], ""),
            "site_name": args.site_name or known.get(SITE_KEYS["site_name"], ""),
            "setting": args.setting or known.get(SITE_KEYS["setting"], "")}
    if not args.no_prompt:
        site["server_url"] = _prompt("Area server address (from your area lead)", site["server_url"])
        site["token"] = _prompt("This site's token (from your area lead; not shown as you type)", site["token"],
                                secret=True)
        site["site_code"] = _prompt("Site code, e.g. OAK", site["site_code"])
        site["site_name"] = _prompt("Site name, e.g. Oakview House", site["site_name"])
        site["setting"] = _prompt("Setting (care_home, homecare, supported_living, complex_care_at_home)",
                                  site["setting"])
    target, conf = install(xlstart=args.xlstart, conf=conf_path, **site)
    warning = version_warning()
    if warning:
        print(warning)
    print(f"Installed the add-in: {target}")
    print(f"Wrote the settings: {conf}")
    print("Start Excel (quit it first if it was open): the ribbon has a 'nearmiss' tab.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
