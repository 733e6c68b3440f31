import Foundation
import MyIMWire

/// One line typed into an interactive chat (`myim chat`).
public enum ChatCommand: Equatable, Sendable {
    /// Text for the current peer.
    case say(String)
    /// `/to NAME`: talk to someone else from now on.
    case to(String)
    /// `/group GROUP`: talk to a group (its id or name) from now on.
    case group(String)
    /// `/groups`: the user's groups.
    case groups
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
        case "/group":
            self = argument.isEmpty ? .invalid("/group takes a group's id or name, e.g. /group climbers") : .group(argument)
        case "/groups": self = .groups
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
        /group G     talk to the group G (its id or name; /groups lists yours)
        /groups      your groups
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
    /// The connection now: a new one after the endpoint sent 48 (reconnect).
    public private(set) var connection: MessagingConnection
    /// Server ids shown in this session: a message redelivered after a reconnect is
    /// acknowledged again but not shown twice.
    private var shown: Set<Int64> = []
    private let output: @Sendable (String) -> Void
    private let me: String
    private var peer: Peer?
    private var ended: ClientError?

    /// Whom typed lines go to.
    private enum Peer {
        case user(String)
        case group(GroupEntry)
    }

    /// - Parameters:
    ///   - peer: whom lines go to at first (`/to` and `/group` change it); a bare name is in the
    ///     user's domain.
    ///   - output: one call per line to show.
    public init(connection: MessagingConnection, peer: String?, output: @escaping @Sendable (String) -> Void) {
        self.connection = connection
        self.output = output
        me = connection.authOK.username.lowercased()
        self.peer = peer.map { .user(connection.qualified($0)) }
    }

    /// Runs until `/quit`, the end of `lines`, or the end of the connection (a newer login,
    /// the endpoint closing). Returns why the connection ended when it was not a quit.
    public func run(lines: some AsyncSequence<String, Never> & Sendable) async -> ClientError? {
        output("* connected to \(connection.endpoint) as \(me); /help lists the commands")
        if let peer { output("* talking to \(describe(peer))") }
        await showInitial()
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
            let target: ChatTarget
            switch peer {
            case nil:
                output("! nobody to talk to yet: /to NAME or /group GROUP first")
                return true
            case .user(let address): target = .user(address)
            case .group(let group): target = .group(group.groupID)
            }
            let clientMessageID = UUID().uuidString
            let sentOn = connection
            do {
                try await sentOn.send(.text(text), to: target, clientMessageID: clientMessageID)
            } catch {
                // The endpoint went away meanwhile (48): send it again, with the same id, on
                // the connection that replaced it; the center keeps it once.
                guard await sentOn.closedReason != nil, await replaced(sentOn) else {
                    output("! not sent: \(error)")
                    if await connection.closedReason != nil { return false }
                    return true
                }
                do {
                    try await connection.send(.text(text), to: target, clientMessageID: clientMessageID)
                } catch {
                    output("! not sent: \(error)")
                }
            }
        case .to(let address):
            let peer = Peer.user(connection.qualified(address))
            self.peer = peer
            output("* talking to \(describe(peer))")
        case .group(let reference):
            do {
                let peer = Peer.group(try connection.group(reference))
                self.peer = peer
                output("* talking to \(describe(peer))")
            } catch {
                output("! \(error.message)")
            }
        case .groups:
            let groups = connection.groups
            if groups.isEmpty { output("* no groups yet (myim group create NAME --members …)") }
            for group in groups.sorted(by: { ($0.groupName, $0.groupID) < ($1.groupName, $1.groupID) }) {
                output("* #\(group.groupName) (group \(group.groupID))")
            }
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
                await acknowledge([delivery])
            case .historyFailed(let delivery, let error):
                show(delivery)
                output("! not kept in history (\(error.message)); it will come again")
            case .addedToGroup(let added):
                let group = "#\(added.groupName) (group \(added.groupID))"
                output(added.by.map { "* \(short($0)) added you to \(group)" } ?? "* you were added to \(group)")
            case .groupNotice(let notice):
                output("* " + describe(notice))
            case .presence(let notice):
                output("* \(short(notice.username)) is \(notice.online ? (notice.status?.rawValue ?? "online") : "offline")")
            case .securityAlert(let alert):
                output("! SECURITY: \(alert.message)")
            case .reconnect(let notice):
                output("* \(notice.reason); reconnecting")
                do {
                    connection = try await connection.reconnect(after: notice)
                    output("* connected to \(connection.endpoint)")
                    await showInitial()
                } catch {
                    ended = error
                    output("* could not reconnect: \(error.message)")
                    return
                }
            case .kicked:
                ended = ClientError(.notLoggedIn, "a newer login of \(me) took over this session (19)")
                output("* a newer login of \(me) took over this session")
                return
            case .chatRefused(let id, let error):
                output("! not sent (message \(id)): \(error)")
            case .error(let error):
                output("! \(error)")
            case .other:
                break
            }
        }
    }

    /// Message 10's unread messages of the current connection: shown (unless this session
    /// showed them already) and acknowledged.
    private func showInitial() async {
        for delivery in connection.initialState.messages { show(delivery) }
        await acknowledge(connection.initialState.messages)
    }

    /// Whether `previous` has been replaced by a new connection, waiting up to 10 s for the
    /// reconnect under way when `previous` ended with a 48.
    private func replaced(_ previous: MessagingConnection) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while connection === previous {
            guard ContinuousClock.now < deadline, ended == nil, !Task.isCancelled else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    private func show(_ delivery: ChatDelivery) {
        guard shown.insert(delivery.serverMessageID).inserted else { return }
        let time = Self.clock(delivery.time)
        let body = switch delivery.content {
        case .text(let text): text
        case .image(let bytes, let mime): "[image\(mime.map { " \($0)" } ?? ""), \(bytes.count) bytes, kept in history]"
        }
        let mine = delivery.senderName.lowercased() == me
        if delivery.kind == .group {
            output("[\(time)] #\(delivery.targetName) \(mine ? "you" : short(delivery.senderName)): \(body)")
        } else if mine {
            output("[\(time)] you → \(short(delivery.targetName)): \(body)")
        } else {
            output("[\(time)] \(short(delivery.senderName)): \(body)")
        }
    }

    /// Acknowledges what was shown (others' QoS 1 messages by id, group messages by cursor).
    private func acknowledge(_ deliveries: [ChatDelivery]) async {
        try? await connection.acknowledge(deliveries)
    }

    private func describe(_ peer: Peer) -> String {
        switch peer {
        case .user(let address): short(address)
        case .group(let group): "#\(group.groupName) (group \(group.groupID))"
        }
    }

    /// A group notice for a person, e.g. `#climbers: bob left`.
    private func describe(_ notice: GroupNotice) -> String {
        let aboutMe = notice.username.lowercased() == me
        let who = aboutMe ? "you" : short(notice.username)
        let by = notice.by.map { short($0) }
        let what = switch notice.kind {
        case .joined: "\(who) joined" + (by.map { " (added by \($0))" } ?? "")
        case .left: "\(who) left"
        case .removed: "\(who) \(aboutMe ? "were" : "was") removed" + (by.map { " by \($0)" } ?? "")
        }
        return "#\(notice.groupName): \(what)"
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
