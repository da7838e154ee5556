<?php
// Client autoconfiguration of maillab.mailserver, served by the HTTPS entry:
//   Thunderbird   GET  /.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=...
//                 GET  http(s)://autoconfig.<domain>/mail/config-v1.1.xml
//   Outlook       POST /autodiscover/autodiscover.xml (its request names the address)
//   Apple         GET  /mobileconfig?emailaddress=...  (a .mobileconfig profile)
// Only hosted domains (active rows of PostfixAdmin's domain table, which holds
// the inventory's domains and those made in the web interface) get an answer.
// Host names and ports come from $CONF['maillab_clients'] in config.local.php.

declare(strict_types=1);

function maillab_fail(int $status, string $message): void
{
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    echo $message, "\n";
    exit;
}

function maillab_xml(string $value): string
{
    return htmlspecialchars($value, ENT_XML1 | ENT_QUOTES, 'UTF-8');
}

$CONF = [];
if (!is_readable('/etc/postfixadmin/config.local.php')) {
    maillab_fail(503, 'autoconfiguration is not configured');
}
require '/etc/postfixadmin/config.local.php';
$clients = $CONF['maillab_clients'] ?? null;
if (!is_array($clients)) {
    maillab_fail(503, 'autoconfiguration is not configured');
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
$host = strtolower(preg_replace('/:\d+$/', '', $_SERVER['HTTP_HOST'] ?? ''));
$kind = 'thunderbird';
if (preg_match('#^/autodiscover/autodiscover\.xml$#i', $path)) {
    $kind = 'outlook';
} elseif (strcasecmp($path, '/mobileconfig') === 0) {
    $kind = 'apple';
}

// The address: the request's own (query, or Outlook's XML body); else the
// domain from the host name asked for (autoconfig.<domain>).
$address = '';
if ($kind === 'outlook' && ($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
    $body = (string) file_get_contents('php://input', false, null, 0, 65536);
    if (preg_match('#<EMailAddress>\s*([^<\s]+)\s*</EMailAddress>#i', $body, $m)) {
        $address = $m[1];
    }
}
if ($address === '') {
    $address = (string) ($_GET['emailaddress'] ?? $_GET['email'] ?? '');
}
$address = strtolower(trim($address));
if ($address !== '') {
    if (!preg_match('/^[^@\s<>"\']+@([a-z0-9.-]+)$/', $address, $m)) {
        maillab_fail(400, 'not an email address');
    }
    $domain = $m[1];
} elseif (preg_match('/^(?:autoconfig|autodiscover)\.([a-z0-9.-]+)$/', $host, $m)) {
    $domain = $m[1];
} else {
    maillab_fail(400, 'name the address (emailaddress=...)');
}

mysqli_report(MYSQLI_REPORT_OFF);
$db = mysqli_init();
$db->options(MYSQLI_OPT_CONNECT_TIMEOUT, 5);
if (!@$db->real_connect($CONF['database_host'], $CONF['database_user'], $CONF['database_password'],
                        $CONF['database_name'], (int) $CONF['database_port'])) {
    maillab_fail(503, 'the account database does not answer; try again later');
}
$query = $db->prepare("SELECT 1 FROM domain WHERE domain = ? AND active = '1' AND backupmx = '0'");
if ($query === false || !$query->bind_param('s', $domain) || !$query->execute()) {
    maillab_fail(503, 'the account database cannot be read; try again later');
}
$hosted = $query->get_result()->num_rows > 0;
$db->close();
if (!$hosted) {
    maillab_fail(404, 'no mail is hosted here for ' . $domain);
}

$name = (string) $clients['host'];
$ports = $clients['ports'];
// Outlook and Apple take one server of each kind: implicit TLS where its port
// is given, else STARTTLS on the other.
$pick = function (string $implicit, string $starttls) use ($ports): array {
    $port = (int) ($ports[$implicit] ?? 0);
    return $port > 0 ? [$port, true] : [(int) ($ports[$starttls] ?? 0), false];
};
[$imapPort, $imapTls] = $pick('imaps', 'imap');
[$smtpPort, $smtpTls] = $pick('submissions', 'submission');
$login = $address !== '' ? $address : '%EMAILADDRESS%';
header('Cache-Control: no-store');

if ($kind === 'thunderbird') {
    header('Content-Type: application/xml; charset=utf-8');
    $servers = [
        ['incomingServer', 'imap', $ports['imaps'], 'SSL'],
        ['incomingServer', 'imap', $ports['imap'], 'STARTTLS'],
        ['outgoingServer', 'smtp', $ports['submissions'], 'SSL'],
        ['outgoingServer', 'smtp', $ports['submission'], 'STARTTLS'],
    ];
    echo '<?xml version="1.0" encoding="UTF-8"?>', "\n";
    echo '<clientConfig version="1.1">', "\n";
    echo '  <emailProvider id="', maillab_xml($domain), '">', "\n";
    echo '    <domain>', maillab_xml($domain), "</domain>\n";
    echo '    <displayName>', maillab_xml($domain), " mail</displayName>\n";
    echo '    <displayShortName>', maillab_xml($domain), "</displayShortName>\n";
    foreach ($servers as [$tag, $type, $port, $socket]) {
        if ((int) $port <= 0) {
            continue;
        }
        echo '    <', $tag, ' type="', $type, '">', "\n";
        echo '      <hostname>', maillab_xml($name), "</hostname>\n";
        echo '      <port>', (int) $port, "</port>\n";
        echo '      <socketType>', $socket, "</socketType>\n";
        echo "      <authentication>password-cleartext</authentication>\n";
        echo "      <username>%EMAILADDRESS%</username>\n";
        echo '    </', $tag, ">\n";
    }
    echo "  </emailProvider>\n";
    echo "</clientConfig>\n";
    exit;
}

if ($kind === 'outlook') {
    header('Content-Type: application/xml; charset=utf-8');
    $protocol = function (string $type, int $port, bool $implicit) use ($name, $login): string {
        return "      <Protocol>\n"
            . '        <Type>' . $type . "</Type>\n"
            . '        <Server>' . maillab_xml($name) . "</Server>\n"
            . '        <Port>' . $port . "</Port>\n"
            . "        <DomainRequired>off</DomainRequired>\n"
            . '        <LoginName>' . maillab_xml($login) . "</LoginName>\n"
            . "        <SPA>off</SPA>\n"
            . "        <SSL>on</SSL>\n"
            . ($implicit ? '' : "        <Encryption>TLS</Encryption>\n")
            . "        <AuthRequired>on</AuthRequired>\n"
            . ($type === 'SMTP' ? "        <UsePOPAuth>off</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n" : '')
            . "      </Protocol>\n";
    };
    echo '<?xml version="1.0" encoding="utf-8"?>', "\n";
    echo '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">', "\n";
    echo '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">', "\n";
    echo "    <Account>\n";
    echo "      <AccountType>email</AccountType>\n";
    echo "      <Action>settings</Action>\n";
    echo $protocol('IMAP', $imapPort, $imapTls);
    echo $protocol('SMTP', $smtpPort, $smtpTls);
    echo "    </Account>\n";
    echo "  </Response>\n";
    echo "</Autodiscover>\n";
    exit;
}

// Apple: one IMAP + SMTP account, implicit TLS on both; the device asks for
// the password (none is in the profile).
if ($address === '') {
    maillab_fail(400, 'name the address (emailaddress=...)');
}
$uuid = function (string $seed): string {
    $h = md5($seed);
    return strtoupper(sprintf('%s-%s-%s-%s-%s', substr($h, 0, 8), substr($h, 8, 4), substr($h, 12, 4),
                              substr($h, 16, 4), substr($h, 20, 12)));
};
$id = implode('.', array_reverse(explode('.', $domain)));
header('Content-Type: application/x-apple-aspen-config; charset=utf-8');
header('Content-Disposition: attachment; filename="' . $domain . '.mobileconfig"');
$x = 'maillab_xml';
$b = fn (bool $flag): string => $flag ? 'true' : 'false';
echo <<<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>{$x($address)}</string>
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>
      <key>EmailAddress</key><string>{$x($address)}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{$x($name)}</string>
      <key>IncomingMailServerPortNumber</key><integer>{$imapPort}</integer>
      <key>IncomingMailServerUseSSL</key><{$b($imapTls)}/>
      <key>IncomingMailServerUsername</key><string>{$x($address)}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{$x($name)}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{$smtpPort}</integer>
      <key>OutgoingMailServerUseSSL</key><{$b($smtpTls)}/>
      <key>OutgoingMailServerUsername</key><string>{$x($address)}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadDisplayName</key><string>{$x($address)}</string>
      <key>PayloadIdentifier</key><string>{$x($id)}.mail.{$x($uuid($address))}</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{$x($uuid('account ' . $address))}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>Mail: {$x($address)}</string>
  <key>PayloadIdentifier</key><string>{$x($id)}.mail</string>
  <key>PayloadRemovalDisallowed</key><false/>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{$x($uuid('profile ' . $address))}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>

PLIST;
