# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_otpgate_global_optspecs
    string join \n bus= json h/help V/version
end

function __fish_otpgate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_otpgate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_otpgate_using_subcommand
    set -l cmd (__fish_otpgate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c otpgate -n "__fish_otpgate_needs_command" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_needs_command" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_needs_command" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "enroll" -d 'Start enrolment: show a QR code and the secret, then confirm with a code'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "confirm" -d 'Confirm a pending enrolment with a code from the app; prints the backup codes once'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "status" -d 'Show enrolment state: enrolled, pending, method, backup codes left, lock'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "history" -d 'Show the last events of a second factor: logins, wrong codes, locks, backup codes used'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "disable" -d 'Remove the second factor (a user needs a current code, and the password where the daemon says so; an administrator neither)'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "remove-device" -d 'Remove one device (a user needs a current code from any device or a backup code, an administrator none)'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "backup-codes" -d 'Replace all backup codes with new ones, printed once'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "unlock" -d 'Administrator: clear USER\'s lock and failure count'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "reset" -d 'Administrator: remove USER\'s enrolment (they can log in without a second factor only with `nullok`)'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "list" -d 'Administrator: every enrolled user with their state'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "stats" -d 'Administrator: logins, failures, lockouts, backup codes used, enrolments, disables and resets over the last 30 days'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "import" -d 'Administrator: take over a ~/.google_authenticator file (secret and scratch codes)'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "doctor" -d 'Administrator: can a login succeed without the code? Checks PAM stacks, sshd and sudo'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "policy" -d 'Administrator: which [[policy]] rule applies to a login, and why'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "breakglass" -d 'Root: one-time codes for a lost device, accepted only on a local console'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "admin" -d 'Administrator: operations on this host\'s otpgated itself'
complete -c otpgate -n "__fish_otpgate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l user -d 'User to enrol [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l method -d 'Second factor to enrol' -r -f -a "totp\t'Codes from an authenticator app (RFC 6238)'
email\t'Codes sent by e-mail (needs [email] configured in otpgated)'"
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l email -d 'E-mail address for --method email' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l name -d 'Name of the device (1-32 of a-z 0-9 . _ -); needed to add a device when already enrolled' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l qr-svg -d 'Also write the QR code as an SVG image to FILE (created 0600: it holds the secret)' -r -F
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand enroll" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand confirm" -l user -d 'User whose enrolment to confirm [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand confirm" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand confirm" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand confirm" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand confirm" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand status" -l user -d 'User to show [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand status" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand status" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand status" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand status" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand history" -l user -d 'User to show [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand history" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand history" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand history" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand history" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -l user -d 'User to act on [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -l code -d 'A current code or a backup code (`-` reads it from stdin); asked for on a terminal when needed' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -l password-stdin -d 'Read the account\'s password from stdin (the line after the code with `--code -`) and always send it; without this it is asked for, without echo on the terminal, when otpgated needs it ([self_service] reauth = "password+code")'
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand disable" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -l user -d 'User to act on [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -l code -d 'A current code or a backup code (`-` reads it from stdin); asked for on a terminal when needed' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -l password-stdin -d 'Read the account\'s password from stdin (the line after the code with `--code -`) and always send it; without this it is asked for, without echo on the terminal, when otpgated needs it ([self_service] reauth = "password+code")'
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand remove-device" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -l user -d 'User to act on [default: you]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -l code -d 'A current code or a backup code (`-` reads it from stdin); asked for on a terminal when needed' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -l password-stdin -d 'Read the account\'s password from stdin (the line after the code with `--code -`) and always send it; without this it is asked for, without echo on the terminal, when otpgated needs it ([self_service] reauth = "password+code")'
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand backup-codes" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand unlock" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand unlock" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand unlock" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand unlock" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand reset" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand reset" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand reset" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand reset" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand list" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand list" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand list" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand list" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand stats" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand stats" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand stats" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand stats" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand import" -l user -d 'The user whose file it is' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand import" -l google-authenticator -d 'Path of the user\'s ~/.google_authenticator file' -r -F
complete -c otpgate -n "__fish_otpgate_using_subcommand import" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand import" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand import" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand doctor" -l root -d 'Check the system under DIR instead of this one (DIR/etc/pam.d, ...); no bus is used' -r -f -a "(__fish_complete_directories)"
complete -c otpgate -n "__fish_otpgate_using_subcommand doctor" -l service -d 'Check this PAM service (repeatable) [default: the login services found in /etc/pam.d]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand doctor" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand doctor" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and not __fish_seen_subcommand_from explain help" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and not __fish_seen_subcommand_from explain help" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and not __fish_seen_subcommand_from explain help" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and not __fish_seen_subcommand_from explain help" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and not __fish_seen_subcommand_from explain help" -f -a "explain" -d 'Which [[policy]] rule applies to USER logging in through SERVICE, and why'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and not __fish_seen_subcommand_from explain help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l rhost -d 'The remote host the login comes from (an address or a name) [default: a local login]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Which [[policy]] rule applies to USER logging in through SERVICE, and why'
complete -c otpgate -n "__fish_otpgate_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -f -a "generate" -d 'Replace the break-glass codes and print the new ones once'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -f -a "ack" -d 'Acknowledge the break-glass codes used so far (stops the notice at every login)'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and not __fish_seen_subcommand_from generate ack help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from generate" -l user -d 'Whose break-glass codes [default: root]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from generate" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from generate" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from generate" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from ack" -l user -d 'Whose break-glass codes [default: root]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from ack" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from ack" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from ack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from ack" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Replace the break-glass codes and print the new ones once'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from help" -f -a "ack" -d 'Acknowledge the break-glass codes used so far (stops the notice at every login)'
complete -c otpgate -n "__fish_otpgate_using_subcommand breakglass; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -s h -l help -d 'Print help'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -f -a "migrate-store" -d 'Move this host\'s users into the fleet database ([storage] backend = "postgres")'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -f -a "rotate-key" -d 'Replace the master key: every TOTP secret re-sealed under a new key (backup codes are dropped)'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and not __fish_seen_subcommand_from migrate-store rotate-key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from migrate-store" -l to -d 'The engine to move to' -r -f -a "postgres\t''"
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from migrate-store" -l config -d 'otpgated\'s configuration file' -r -F
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from migrate-store" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from migrate-store" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from migrate-store" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from migrate-store" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from rotate-key" -l config -d 'otpgated\'s configuration file' -r -F
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from rotate-key" -l bus -d 'System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]' -r
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from rotate-key" -l json -d 'Print one JSON object on stdout instead of text'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from rotate-key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from rotate-key" -s V -l version -d 'Print version'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "migrate-store" -d 'Move this host\'s users into the fleet database ([storage] backend = "postgres")'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "rotate-key" -d 'Replace the master key: every TOTP secret re-sealed under a new key (backup codes are dropped)'
complete -c otpgate -n "__fish_otpgate_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "enroll" -d 'Start enrolment: show a QR code and the secret, then confirm with a code'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "confirm" -d 'Confirm a pending enrolment with a code from the app; prints the backup codes once'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "status" -d 'Show enrolment state: enrolled, pending, method, backup codes left, lock'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "history" -d 'Show the last events of a second factor: logins, wrong codes, locks, backup codes used'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "disable" -d 'Remove the second factor (a user needs a current code, and the password where the daemon says so; an administrator neither)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "remove-device" -d 'Remove one device (a user needs a current code from any device or a backup code, an administrator none)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "backup-codes" -d 'Replace all backup codes with new ones, printed once'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "unlock" -d 'Administrator: clear USER\'s lock and failure count'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "reset" -d 'Administrator: remove USER\'s enrolment (they can log in without a second factor only with `nullok`)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "list" -d 'Administrator: every enrolled user with their state'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "stats" -d 'Administrator: logins, failures, lockouts, backup codes used, enrolments, disables and resets over the last 30 days'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "import" -d 'Administrator: take over a ~/.google_authenticator file (secret and scratch codes)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "doctor" -d 'Administrator: can a login succeed without the code? Checks PAM stacks, sshd and sudo'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "policy" -d 'Administrator: which [[policy]] rule applies to a login, and why'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "breakglass" -d 'Root: one-time codes for a lost device, accepted only on a local console'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "admin" -d 'Administrator: operations on this host\'s otpgated itself'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and not __fish_seen_subcommand_from enroll confirm status history disable remove-device backup-codes unlock reset list stats import doctor policy breakglass admin help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "explain" -d 'Which [[policy]] rule applies to USER logging in through SERVICE, and why'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and __fish_seen_subcommand_from breakglass" -f -a "generate" -d 'Replace the break-glass codes and print the new ones once'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and __fish_seen_subcommand_from breakglass" -f -a "ack" -d 'Acknowledge the break-glass codes used so far (stops the notice at every login)'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and __fish_seen_subcommand_from admin" -f -a "migrate-store" -d 'Move this host\'s users into the fleet database ([storage] backend = "postgres")'
complete -c otpgate -n "__fish_otpgate_using_subcommand help; and __fish_seen_subcommand_from admin" -f -a "rotate-key" -d 'Replace the master key: every TOTP secret re-sealed under a new key (backup codes are dropped)'
