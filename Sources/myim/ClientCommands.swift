import ArgumentParser
import Foundation
import MyIMClient
import MyIMSecureChannel
import MyIMWire

/// Options shared by `myim register` and `myim login`.
struct LoginCenterOptions: ParsableArguments {
    @Argument(help: "Your address, e.g. alice@alpha.example.")
    var address: String

    @Option(help: ArgumentHelp("The login center, host:port.", valueName: "host:port"))
    var server: String = "127.0.0.1:7000"

    @Option(help: ArgumentHelp(
        "Accept only the login center whose key has this fingerprint (else the first key seen is recorded in known_servers).",
        valueName: "sha256:…"))
    var pin: String?

    @Flag(help: "Read the password from the first line of standard input (required: there is no prompt).")
    var passwordStdin = false

    @OptionGroup var output: ClientOutputOptions

    func validate() throws {
        guard address.contains("@"), !address.hasPrefix("@"), !address.hasSuffix("@") else {
            throw ValidationError("give the full address, e.g. alice@alpha.example (not '\(address)')")
        }
        if let pin, KeyFingerprint(pin) == nil {
            throw ValidationError("--pin must be sha256: followed by 64 hex digits, as the login center's operator gives it")
        }
        guard passwordStdin else {
            throw ValidationError("""
                give the password on standard input with --password-stdin, \
                e.g. printf '%s\\n' \"$PASSWORD\" | myim login \(address) --password-stdin
                """)
        }
    }

    /// The first line of standard input, without its line break.
    func readPassword() throws -> String {
        guard let line = readLine(strippingNewline: true) else {
            throw ValidationError("--password-stdin: standard input is empty; the password is its first line")
        }
        let password = line.hasSuffix("\r") ? String(line.dropLast()) : line
        guard !password.isEmpty else { throw ValidationError("--password-stdin: the first line of standard input is empty") }
        return password
    }

    /// Opens the connection to the login center with these options.
    func connect(home: ClientHome) async throws(ClientError) -> LoginConnection {
        try await LoginConnection.open(
            server: server, pin: pin.flatMap(KeyFingerprint.init), home: home, client: "myim-cli/\(MyIMVersion.string)")
    }

    /// Runs `body` on a connection to the login center, closed afterwards whatever happens.
    func withConnection<T: Sendable>(home: ClientHome, _ body: (LoginConnection) async throws -> T) async throws -> T {
        let connection = try await connect(home: home)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }
}

/// `--json` and `--home`, for every client command.
struct ClientOutputOptions: ParsableArguments {
    @Flag(help: "Print one JSON object instead of lines for a person.")
    var json = false

    @Option(help: ArgumentHelp("The client directory (default: $MYIM_HOME, else ~/.config/myim).", valueName: "dir"))
    var home: String?

    var clientHome: ClientHome { ClientHome(path: home) }

    /// Prints `error` on standard error (and as `{"error": …}` with `--json`) and exits with 1.
    func fail(_ error: any Error) -> ExitCode {
        let clientError = error as? ClientError ?? ClientError(.internalError, "\(error)")
        FileHandle.standardError.write(Data("myim: \(clientError)\n".utf8))
        if json {
            var object: [String: Any] = ["code": clientError.code.rawValue, "message": clientError.message]
            if let retryAfter = clientError.retryAfter { object["retry_after"] = retryAfter }
            printJSON(["error": object])
        }
        return ExitCode(1)
    }

    /// Prints `object` as one line of JSON with sorted keys.
    func printJSON(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        print(String(decoding: data, as: UTF8.self))
    }
}

/// `myim register alice@alpha.example --password-stdin`: creates an account on the login center.
struct RegisterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract: "Create an account on the login center.",
        discussion: "The password is read from the first line of standard input (--password-stdin); it is never stored."
    )

    @OptionGroup var options: LoginCenterOptions

    func run() async throws {
        let password = try options.readPassword()
        let home = options.output.clientHome
        do {
            let (registered, connection) = try await options.withConnection(home: home) { connection in
                (try await connection.register(address: options.address, password: password), connection)
            }
            if options.output.json {
                options.output.printJSON([
                    "address": registered.username, "user_id": registered.userID, "login_server": connection.server.description,
                    "login_server_fingerprint": connection.session.serverKey.fingerprint.description,
                ])
            } else {
                print("registered \(registered.username) (user \(registered.userID)) at \(connection.server)")
                print("next: myim login \(registered.username) --server \(connection.server) --password-stdin")
            }
        } catch {
            throw options.output.fail(error)
        }
    }
}

/// `myim login alice@alpha.example --password-stdin`: logs in and saves the session.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Log in to the login center and save the token and the server list.",
        discussion: """
            The password is read from the first line of standard input (--password-stdin); it is never stored. \
            The session goes to session.json in the client directory; see `myim whoami`.
            """
    )

    @OptionGroup var options: LoginCenterOptions

    func run() async throws {
        let password = try options.readPassword()
        let home = options.output.clientHome
        do {
            let session = try await options.withConnection(home: home) { connection in
                try await connection.login(address: options.address, password: password)
            }
            let summary = SessionSummary(session)
            if options.output.json {
                print(summary.json())
            } else {
                print("logged in as \(session.address)" + (session.newDevice ? " (the login center sees this device for the first time)" : ""))
                summary.lines.forEach { print($0) }
            }
        } catch {
            throw options.output.fail(error)
        }
    }
}

/// `myim whoami`: shows the saved session.
struct WhoamiCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whoami",
        abstract: "Show the saved session: address, token expiry, device and server list."
    )

    @OptionGroup var output: ClientOutputOptions

    func run() async throws {
        let home = output.clientHome
        do {
            guard let session = try home.loadSession() else {
                throw ClientError(.notLoggedIn, "not logged in (no session in \(home.sessionPath)); run myim login <address> --password-stdin")
            }
            let summary = SessionSummary(session)
            if output.json {
                print(summary.json())
            } else {
                summary.lines.forEach { print($0) }
            }
        } catch {
            throw output.fail(error)
        }
    }
}
