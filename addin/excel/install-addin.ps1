# Install nearmiss and its Excel add-in for the current Windows user.
#
#   powershell -ExecutionPolicy Bypass -File install-addin.ps1
#   powershell -ExecutionPolicy Bypass -File install-addin.ps1 -Package C:\path\to\nearmiss -ServerUrl https://... -SiteCode OAK
#
# Needs Python 3.11 or later from python.org (tick "Add python.exe to PATH"). Quit Excel first.
# Steps: a Python environment of its own in %LOCALAPPDATA%\nearmiss\venv, pip installs nearmiss
# (and xlwings, pywin32) into it, then `python -m addin.excel.install` copies nearmiss.xlam to
# Excel's XLSTART folder and writes %USERPROFILE%\.myaddin\myaddin.conf (Interpreter_Win = that
# environment's python.exe).
param(
    [string]$Package = "",
    [string]$ServerUrl = "",
    [string]$SiteCode = "",
    [string]$SiteName = "",
    [string]$Setting = ""
)
$ErrorActionPreference = "Stop"

if (-not $Package) {
    # Run from a copy of the project: install that; otherwise the published package.
    $root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
    if (Test-Path (Join-Path $root "pyproject.toml")) { $Package = "$root" } else { $Package = "nearmiss" }
}

$python = $null
foreach ($candidate in @("py", "python")) {
    if (Get-Command $candidate -ErrorAction SilentlyContinue) { $python = $candidate; break }
}
if (-not $python) {
    Write-Error "Python was not found. Install Python 3.11 or later from python.org (tick 'Add python.exe to PATH') and run this again."
}
$pyArgs = @()
if ($python -eq "py") { $pyArgs = @("-3") }

& $python @pyArgs -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)"
if ($LASTEXITCODE -ne 0) { Write-Error "nearmiss needs Python 3.11 or later." }

$venv = Join-Path $env:LOCALAPPDATA "nearmiss\venv"
if (-not (Test-Path (Join-Path $venv "Scripts\python.exe"))) {
    Write-Host "Making a Python environment for nearmiss in $venv ..."
    & $python @pyArgs -m venv "$venv"
    if ($LASTEXITCODE -ne 0) { Write-Error "Could not make the Python environment in $venv." }
}
$venvPython = Join-Path $venv "Scripts\python.exe"
Write-Host "Installing $Package ..."
& $venvPython -m pip install --upgrade "$Package"
if ($LASTEXITCODE -ne 0) { Write-Error "pip could not install $Package." }

$installArgs = @()
if ($ServerUrl) { $installArgs += @("--server-url", $ServerUrl) }
if ($SiteCode) { $installArgs += @("--site-code", $SiteCode) }
if ($SiteName) { $installArgs += @("--site-name", $SiteName) }
if ($Setting) { $installArgs += @("--setting", $Setting) }
& $venvPython -m addin.excel.install @installArgs
if ($LASTEXITCODE -ne 0) { Write-Error "The add-in could not be installed (see the message above)." }
