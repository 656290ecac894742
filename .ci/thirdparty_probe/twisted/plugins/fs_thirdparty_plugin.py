# Registers fs_thirdparty_trial.ProbeReporter as trial's --reporter=fsprobe
# (Twisted finds plugins in any twisted/plugins directory on sys.path).
from twisted.plugins.twisted_trial import _Reporter

FsProbe = _Reporter(
    "fastsock CI probe reporter",
    "fs_thirdparty_trial",
    description="verbose output plus a JSON outcome record ($FS_THIRDPARTY_OUT)",
    longOpt="fsprobe",
    shortOpt=None,
    klass="ProbeReporter",
)
