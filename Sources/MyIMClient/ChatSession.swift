import Foundation
import MyIMWire

/// One line typed into an interactive chat (`myim chat`).
public enum ChatCommand: Equatable, Sendable {
    /// Text for the current peer.
    case say(String)
    /// `/to NAME`: talk to someone else from now on.
    case to(String)
    /// `/friends`: the friend list, with who is online.
    case friends
    /// `/help`.
    case help
    /// `/quit` (or the end of input).
    case quit
    /// Nothing to do (an empty line).
    case none
    /// A line that is not a command, with why.
    case invalid(String)

    public init(line: String) {
        let line = line.trimmingWhitespace()
        guard line.hasPrefix("/") else {
            self = line.isEmpty ? .none : .say(line)
            return
        }
        // "//text" sends "/text".
        if line.hasPrefix("//") {
            self = .say(String(line.dropFirst()))
            return
        }
        let words = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        let argument = words.count > 1 ? String(words[1]).trimmingWhitespace() : ""
        switch words[0].lowercased() {
        case "/to":
            self = argument.isEmpty || argument.contains(" ") ? .invalid("/to takes one address, e.g. /to bob") : .to(argument)
        case "/friends": self = .friends
        case "/help", "/?": self = .help
        case "/quit", "/exit": self = .quit
        default: self = .invalid("unknown command \(words[0]); /help lists them")
        }
    }

    /// What `/help` prints.
    public static let helpText = """
        type a line to send it to the current peer ("//text" sends "/text")
        /to NAME     talk to NAME (name@domain; a bare name is in your domain)
        /friends     your friends, and who is online
        /help        this text
        /quit        end the session (end of input does too)
        """
}

/// An interactive chat on a ``MessagingConnection``: lines in, messages and events out as
/// they happen. The CLI's `myim chat` runs one on standard input and output.
///
/// Every delivery is in history before it is shown (the connection writes it first) and
/// acknowledged after, so a QoS 1 message the session saw is never sent again; one that
/// could not be written to history is shown and left unacknowledged.
public actor ChatSession {
    public nonisolated let connection: MessagingConnection
    private let output: @Sendable (String) -> Void
    private let me: String
    private var peer: String?
    private var ended: ClientError?

    /// - Parameters:
    ///   - peer: whom lines go to at first (`/to` changes it); a bare name is in the user's domain.
    ///   - output: one call per line to show.
    public init(connection: MessagingConnection, peer: String?, output: @escaping @Sendable (String) -> Void) {
        self.connection = connection
        self.output = output
        me = connection.authOK.username.lowercased()
        self.peer = peer.map { connection.qualified($0) }
    }

    /// Runs until `/quit`, the end of `lines`, or the end of the connection (a newer login,
    /// the endpoint closing). Returns why the connection ended when it was not a quit.
    public func run(lines: some AsyncSequence<String, Never> & Sendable) async -> ClientError? {
        output("* connected to \(connection.endpoint) as \(me); /help lists the commands")
        if let peer { output("* talking to \(short(peer))") }
        for delivery in connection.initialState.messages {
            show(delivery)
            await acknowledge(delivery)
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.receive() }
            group.addTask { await self.read(lines) }
            await group.next()
            group.cancelAll()
        }
        if ended == nil {
            do { try await connection.quit() } catch { ended = error }
        } else {
            await connection.close()
        }
        return ended
    }

    // MARK: - Input

    private func read(_ lines: some AsyncSequence<String, Never>) async {
        for await line in lines {
            guard await handle(ChatCommand(line: line)) else { return }
        }
    }

    /// Carries out one command; false to end the session.
    private func handle(_ command: ChatCommand) async -> Bool {
        switch command {
        case .none:
            break
        case .say(let text):
            guard let peer else {
                output("! nobody to talk to yet: /to NAME first")
                break
            }
            do {
                try await connection.send(text: text, to: peer)
            } catch {
                output("! not sent: \(error)")
                if await connection.closedReason != nil { return false }
            }
        case .to(let address):
            let address = connection.qualified(address)
            peer = address
            output("* talking to \(short(address))")
        case .friends:
            do {
                let friends = try await connection.friendsPresence()
                if friends.isEmpty { output("* no friends yet (myim friend add NAME)") }
                for friend in friends.sorted(by: { $0.username < $1.username }) {
                    let state = friend.online ? (friend.status?.rawValue ?? "online") : "offline"
                    output("* \(short(friend.username)): \(state)")
                }
            } catch {
                output("! \(error)")
            }
        case .help:
            for line in ChatCommand.helpText.split(separator: "\n") { output("* \(line)") }
        case .quit:
            return false
        case .invalid(let reason):
            output("! \(reason)")
        }
        return true
    }

    // MARK: - Events

    private func receive() async {
        while !Task.isCancelled {
            guard let event = await connection.next() else {
                if let reason = await connection.closedReason, !Task.isCancelled {
                    ended = reason
                    output("* the connection ended: \(reason.message)")
                }
                return
            }
            switch event {
            case .delivery(let delivery):
                show(delivery)
                await acknowledge(delivery)
            case .historyFailed(let delivery, let error):
                show(delivery)
                output("! not kept in history (\(error.message)); it will come again")
            case .presence(let notice):
                output("* \(short(notice.username)) is \(notice.online ? (notice.status?.rawValue ?? "online") : "offline")")
            case .securityAlert(let alert):
                output("! SECURITY: \(alert.message)")
            case .kicked:
                ended = ClientError(.notLoggedIn, "a newer login of \(me) took over this session (19)")
                output("* a newer login of \(me) took over this session")
                return
            case .error(let error):
                output("! \(error)")
            case .other:
                break
            }
        }
    }

    private func show(_ delivery: ChatDelivery) {
        let time = Self.clock(delivery.time)
        let body = switch delivery.content {
        case .text(let text): text
        case .image(let bytes, let mime): "[image\(mime.map { " \($0)" } ?? ""), \(bytes.count) bytes, kept in history]"
        }
        if delivery.senderName.lowercased() == me {
            output("[\(time)] you → \(short(delivery.targetName)): \(body)")
        } else {
            output("[\(time)] \(short(delivery.senderName)): \(body)")
        }
    }

    private func acknowledge(_ delivery: ChatDelivery) async {
        guard delivery.qos == .atLeastOnce, delivery.senderName.lowercased() != me else { return }
        try? await connection.ack([delivery.serverMessageID])
    }

    /// An address without the user's own domain.
    private func short(_ address: String) -> String {
        let suffix = "@" + connection.session.domain
        return address.lowercased().hasSuffix(suffix) ? String(address.dropLast(suffix.count)) : address
    }

    /// Local wall-clock time of a server time.
    private static func clock(_ milliseconds: Int64) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}
