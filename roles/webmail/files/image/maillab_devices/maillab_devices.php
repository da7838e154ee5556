<?php
/**
 * maillab_devices: a Settings section, "Mail programs", that tells the user
 * how to set up their other mail programs: the server names and ports, and
 * a download of the Apple profile (.mobileconfig) for their address. The
 * files themselves come from the stack's HTTPS entry (/mobileconfig and the
 * Thunderbird and Outlook autoconfiguration), which answers for every hosted
 * domain.
 *
 * Config: maillab_devices_host (the host name mail programs use) and
 * maillab_devices_ports (imaps, submissions, ... => port; 0 leaves one out).
 */
class maillab_devices extends rcube_plugin
{
    public $task = 'settings';

    public function init()
    {
        $this->add_texts('localization/');
        $this->add_hook('settings_actions', [$this, 'settings_actions']);
        $this->register_action('plugin.maillab_devices', [$this, 'show']);
    }

    public function settings_actions($args)
    {
        $args['actions'][] = [
            'action' => 'plugin.maillab_devices',
            'class'  => 'devices',
            'label'  => 'devices',
            'title'  => 'devicestitle',
            'domain' => 'maillab_devices',
        ];
        return $args;
    }

    public function show()
    {
        $rcmail = rcmail::get_instance();
        $rcmail->output->set_pagetitle($this->gettext('devices'));
        $rcmail->output->add_handlers(['plugin.body' => [$this, 'body']]);
        $rcmail->output->send('plugin');
    }

    public function body()
    {
        $rcmail = rcmail::get_instance();
        $address = $rcmail->get_user_name();
        $host = (string) $rcmail->config->get('maillab_devices_host', '');
        $ports = (array) $rcmail->config->get('maillab_devices_ports', []);

        $table = new html_table(['cols' => 3, 'class' => 'propform']);
        $rows = [
            ['incoming', 'imaps', 'ssl'], ['incoming', 'imap', 'starttls'],
            ['outgoing', 'submissions', 'ssl'], ['outgoing', 'submission', 'starttls'],
            ['filters', 'managesieve', 'starttls'],
        ];
        foreach ($rows as [$label, $service, $security]) {
            $port = (int) ($ports[$service] ?? 0);
            if ($port <= 0) {
                continue;
            }
            $table->add('title', rcube::Q($this->gettext($label)));
            $table->add(null, rcube::Q($host . ':' . $port));
            $table->add(null, rcube::Q($this->gettext($security)));
        }

        $profile = html::a([
            'href'  => '/mobileconfig?emailaddress=' . urlencode($address),
            'id'    => 'maillab-mobileconfig',
            'class' => 'button mainaction btn btn-primary',
            'download' => '',
        ], rcube::Q($this->gettext('appleprofile')));

        $content = html::p(null, rcube::Q($this->gettext('intro')))
            . html::p(null, rcube::Q($this->gettext('username')) . ' ' . html::tag('strong', null, rcube::Q($address)))
            . $table->show()
            . html::p(null, rcube::Q($this->gettext('applehint')))
            . html::p(null, $profile);

        return html::div(['class' => 'formcontent', 'id' => 'maillab-devices'],
            html::tag('fieldset', null, html::tag('legend', null, rcube::Q($this->gettext('devicestitle'))) . $content));
    }
}
