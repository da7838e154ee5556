# A message moved or copied into Junk: train Rspamd with it as spam.
require ["vnd.dovecot.pipe", "copy", "imapsieve"];
pipe :copy "rspamd-learn" ["spam"];
