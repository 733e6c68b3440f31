import ArgumentParser
import Foundation
import MyIMClient
import MyIMSecureChannel
import MyIMWire

/// `--endpoint` and `--pin`, for the commands that talk to an endpoint.
struct MessagingEndpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Connect to this endpoint instead of the best one of the saved server list. It must be in the signed list, unless --pin gives its key.",
        valueName: "host:port"))
    var endpoint: String?

    @Option(help: ArgumentHelp("With --endpoint outside the signed server list: the endpoint's key fingerprint.", valueName: "sha256:…"))
    var pin: String?

    func validate() throws {
        if let pin {
            guard KeyFingerprint(pin) != nil else {
                throw ValidationError("--pin must be sha256: followed by 64 hex digits, as the endpoint's operator gives it")
            }
            guard endpoint != nil else { throw ValidationError("--pin only applies with --endpoint host:port") }
        }
    }

    /// Loads the saved session and connects; endpoints skipped on the way are reported on
    /// standard error.
    func connect(home: ClientHome) async throws(ClientError) -> MessagingConnection {
        guard let session = try home.loadSession() else {
            throw ClientError(.notLoggedIn, "not logged in (no session in \(home.sessionPath)); run myim login <address> --password-stdin")
        }
        let connection = try await MessagingConnection.open(
            session: session, home: home, endpoint: endpoint, pin: pin.flatMap(KeyFingerprint.init))
        for skipped in connection.skipped {
            FileHandle.standardError.write(Data("myim: skipped \(skipped.endpoint): \(skipped.error.message)\n".utf8))
        }
        return connection
    }
}

/// The text, `--image`, `--mime` and `--qos` of `myim send` and `myim group send`.
struct ChatContentOptions: ParsableArguments {
    @Argument(help: "The text to send.")
    var text: String?

    @Option(help: ArgumentHelp("Send this image file (at most 4 MiB).", valueName: "file"))
    var image: String?

    @Option(help: ArgumentHelp("The image's media type (default: from its first bytes, else its extension).", valueName: "type"))
    var mime: String?

    @Option(help: ArgumentHelp("1: stored until received (default); 0: best effort: delivered only to an online recipient, not stored, not acknowledged.", valueName: "0|1"))
    var qos: Int64 = 1

    func validate() throws {
        guard text != nil || image != nil else { throw ValidationError("give a text to send, or --image FILE") }
        guard QoS(rawValue: qos) != nil else { throw ValidationError("--qos must be 0 or 1") }
        if let text, text.isEmpty, image == nil { throw ValidationError("the text is empty") }
    }

    var qualityOfService: QoS { QoS(rawValue: qos) ?? .atLeastOnce }

    /// What to send, in order: the image (read and checked now), then the text.
    func contents() throws(ClientError) -> [ChatContent] {
        var contents: [ChatContent] = []
        if let image { contents.append(try SendCommand.loadImage(image, mime: mime)) }
        if let text, !text.isEmpty { contents.append(.text(text)) }
        return contents
    }
}

/// `myim send bob@alpha.example "text" [--image FILE]`: sends a chat message.
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a text or an image to another user.",
        discussion: """
            Uses the saved session (myim login) and the best endpoint of its signed server list, or --endpoint. \
            With --image the image is sent, then the text if one is given too. Prints each message's server id and \
            time (one JSON object per message with --json). Sent messages are also kept in the local history \
            ($MYIM_HOME/history/<peer>.jsonl). Exits with 1 and the server's message when a message is refused.
            """
    )

    /// Images larger than this are refused before connecting.
    static let maxImageBytes = 4 * 1024 * 1024

    @Argument(help: "The recipient's address, e.g. bob@alpha.example (a bare name means your own domain).")
    var recipient: String

    @OptionGroup var content: ChatContentOptions
    @OptionGroup var endpoint: MessagingEndpointOptions
    @OptionGroup var output: ClientOutputOptions

    func validate() throws {
        guard !recipient.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("give the recipient's address") }
    }

    func run() async throws {
        do {
            let contents = try content.contents()
            let qos = content.qualityOfService

            var connection = try await endpoint.connect(home: output.clientHome)
            /// QoS 0 chats sent: reported once the session has ended without a 20 naming them.
            var bestEffort: [(ChatAccepted, ChatContent, EndpointCandidate)] = []
            /// 20s naming a chat, from every connection this command used.
            var refused: [String: ClientError] = [:]
            for content in contents {
                let accepted: ChatAccepted
                let clientMessageID = UUID().uuidString
                do {
                    accepted = try await connection.send(content, to: recipient, qos: qos, clientMessageID: clientMessageID)
                } catch {
                    // The endpoint went away (48) before answering: once more through another
                    // endpoint, with the same id, so that the center keeps it once.
                    guard endpoint.endpoint == nil, let notice = await Self.reconnectNotice(on: connection, refused: &refused) else {
                        await connection.close()
                        throw error
                    }
                    connection = try await connection.reconnect(after: notice)
                    accepted = try await connection.send(content, to: recipient, qos: qos, clientMessageID: clientMessageID)
                }
                if qos == .bestEffort {
                    bestEffort.append((accepted, content, connection.endpoint))
                } else {
                    report(accepted, to: connection.qualified(recipient), content: content, qos: qos, endpoint: connection.endpoint)
                }
            }
            // Quitting waits for 44, by which time the center has handled every chat sent
            // before it: a QoS 0 chat it refused has had its 20.
            do {
                try await connection.quit()
            } catch {
                FileHandle.standardError.write(Data("myim: warning: the session did not end cleanly: \(error.message)\n".utf8))
            }
            if !bestEffort.isEmpty {
                while let event = await connection.next(timeout: .milliseconds(100)) {
                    if case .chatRefused(let id, let error) = event { refused[id] = error }
                }
                var firstRefusal: ClientError?
                for (accepted, content, sentThrough) in bestEffort {
                    if let error = refused[accepted.clientMessageID] {
                        FileHandle.standardError.write(Data("myim: not sent (\(accepted.clientMessageID)): \(error.message)\n".utf8))
                        firstRefusal = firstRefusal ?? error
                    } else {
                        report(accepted, to: connection.qualified(recipient), content: content, qos: qos, endpoint: sentThrough)
                    }
                }
                if let firstRefusal { throw firstRefusal }
            }
        } catch {
            throw output.fail(error)
        }
    }

    /// The 48 among what `connection` received, if its endpoint sent one before closing.
    /// Refusals of chats seen on the way go into `refused`.
    private static func reconnectNotice(on connection: MessagingConnection, refused: inout [String: ClientError]) async -> Reconnect? {
        guard await connection.closedReason != nil else { return nil }
        while let event = await connection.next(timeout: .milliseconds(100)) {
            switch event {
            case .reconnect(let notice): return notice
            case .chatRefused(let id, let error): refused[id] = error
            default: break
            }
        }
        return nil
    }

    private func report(_ accepted: ChatAccepted, to recipient: String, content: ChatContent, qos: QoS, endpoint: EndpointCandidate) {
        let kind = if case .image = content { "image" } else { "text" }
        if output.json {
            var object: [String: Any] = [
                "to": recipient, "kind": kind, "client_msg_id": accepted.clientMessageID,
                "time": accepted.time, "qos": qos.rawValue, "endpoint": endpoint.address.description,
            ]
            // QoS 0 has no server id: nothing answers it.
            if qos == .atLeastOnce { object["server_msg_id"] = accepted.serverMessageID }
            output.printJSON(object)
        } else {
            if qos == .bestEffort {
                print("sent \(kind) to \(recipient) at \(SessionSummary.iso8601(accepted.time)) (QoS 0: delivered if \(recipient) is online, not acknowledged)")
            } else {
                print("sent \(kind) to \(recipient): server id \(accepted.serverMessageID) at \(SessionSummary.iso8601(accepted.time))")
            }
        }
    }

    /// The image at `path` as chat content, checked against ``maxImageBytes``.
    static func loadImage(_ path: String, mime: String?) throws(ClientError) -> ChatContent {
        let path = (path as NSString).expandingTildeInPath
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            throw ClientError(.invalidField, "cannot read the image \(path): \(error.localizedDescription)")
        }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard size <= maxImageBytes else {
            throw ClientError(.contentTooLarge, "the image \(path) is \(size) bytes; at most \(maxImageBytes) (4 MiB) can be sent")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw ClientError(.invalidField, "cannot read the image \(path)") }
        guard data.count <= maxImageBytes else {
            throw ClientError(.contentTooLarge, "the image \(path) is \(data.count) bytes; at most \(maxImageBytes) (4 MiB) can be sent")
        }
        guard !data.isEmpty else { throw ClientError(.invalidField, "the image \(path) is empty") }
        return .image(bytes: Array(data), mime: mime ?? mediaType(of: Array(data.prefix(12)), path: path))
    }

    /// The media type from the file's first bytes, else from its extension; nil if unknown.
    static func mediaType(of head: [UInt8], path: String) -> String? {
        if head.starts(with: [0x89, 0x50, 0x4e, 0x47]) { return "image/png" }
        if head.starts(with: [0xff, 0xd8, 0xff]) { return "image/jpeg" }
        if head.starts(with: Array("GIF8".utf8)) { return "image/gif" }
        if head.count >= 12, head.starts(with: Array("RIFF".utf8)), Array(head[8..<12]) == Array("WEBP".utf8) { return "image/webp" }
        switch (path as NSString).pathExtension.lowercased() {
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "webp": return "image/webp"
        case "svg": return "image/svg+xml"
        default: return nil
        }
    }
}

/// `myim inbox [--wait SECONDS]`: prints what is waiting and what arrives, and acknowledges it.
struct InboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inbox",
        abstract: "Receive messages: those waiting first, then whatever arrives until the wait ends.",
        discussion: """
            Each message is written to the local history ($MYIM_HOME/history/<peer>.jsonl, group-<id>.jsonl for \
            a group) and then acknowledged, so that the server stops keeping it (group messages by per-group cursor). \
            Group messages show as "TIME  sender → #group  text". With --json every message is printed as one JSON \
            object in message 18's layout (image bytes in base64), and other events as objects with an "event" key \
            (presence, security_alert, added_to_group, group_notice, error, kicked). \
            Exits with 0 after the wait; with 1 when the connection fails, is refused, or a newer login takes over.
            """
    )

    @Option(help: ArgumentHelp("How long to wait for new messages after the waiting ones, in seconds (at most 3600).", valueName: "seconds"))
    var wait: Double = 2

    @OptionGroup var endpoint: MessagingEndpointOptions
    @OptionGroup var output: ClientOutputOptions

    func validate() throws {
        guard wait.isFinite, (0...3600).contains(wait) else { throw ValidationError("--wait must be from 0 to 3600 seconds") }
    }

    func run() async throws {
        do {
            var connection = try await endpoint.connect(home: output.clientHome)
            let me = connection.authOK.username.lowercased()
            var shown: Set<Int64> = []
            do {
                for delivery in connection.initialState.messages where shown.insert(delivery.serverMessageID).inserted { show(delivery, me: me) }
                try await connection.acknowledge(connection.initialState.messages)
                let deadline = ContinuousClock.now + .milliseconds(Int64(wait * 1000))
                while ContinuousClock.now < deadline {
                    guard let event = await connection.next(timeout: deadline - ContinuousClock.now) else {
                        if let reason = await connection.closedReason { throw reason }
                        continue
                    }
                    switch event {
                    case .delivery(let delivery):
                        // A message redelivered after a reconnect is acknowledged again, not shown again.
                        if shown.insert(delivery.serverMessageID).inserted { show(delivery, me: me) }
                        try await connection.acknowledge([delivery])
                    case .reconnect(let notice):
                        if output.json {
                            output.printJSON(["event": "reconnect", "reason": notice.reason, "next": notice.next ?? ""])
                        }
                        warn("\(notice.reason); reconnecting")
                        connection = try await connection.reconnect(after: notice)
                        for delivery in connection.initialState.messages where shown.insert(delivery.serverMessageID).inserted {
                            show(delivery, me: me)
                        }
                        try await connection.acknowledge(connection.initialState.messages)
                    case .historyFailed(let delivery, let error):
                        show(delivery, me: me)
                        warn("not acknowledged, it will come again: \(error.message)")
                    case .presence(let notice):
                        if output.json {
                            output.printJSON([
                                "event": "presence", "username": notice.username, "online": notice.online, "time": notice.time,
                                "status": notice.status?.rawValue ?? (notice.online ? "online" : "offline"),
                            ])
                        } else {
                            print("\(SessionSummary.iso8601(notice.time))  \(notice.username) is \(notice.online ? "online" : "offline")")
                        }
                    case .securityAlert(let alert):
                        if output.json {
                            output.printJSON([
                                "event": "security_alert", "kind": alert.kind, "time": alert.time, "message": alert.message,
                                "device": alert.device ?? "", "address": alert.address ?? "",
                            ])
                        } else {
                            print("\(SessionSummary.iso8601(alert.time))  SECURITY: \(alert.message)")
                        }
                    case .addedToGroup(let added):
                        if output.json {
                            var object: [String: Any] = ["event": "added_to_group", "group_id": added.groupID, "group_name": added.groupName]
                            if let by = added.by { object["by"] = by }
                            output.printJSON(object)
                        } else {
                            let by = added.by.map { " by \($0)" } ?? ""
                            print("\(SessionSummary.iso8601(Self.now()))  added to #\(added.groupName) (group \(added.groupID))\(by)")
                        }
                    case .groupNotice(let notice):
                        if output.json {
                            var object: [String: Any] = [
                                "event": "group_notice", "group_id": notice.groupID, "group_name": notice.groupName,
                                "kind": notice.kind.rawValue, "username": notice.username, "time": notice.time,
                            ]
                            if let by = notice.by { object["by"] = by }
                            output.printJSON(object)
                        } else {
                            print("\(SessionSummary.iso8601(notice.time))  #\(notice.groupName) (group \(notice.groupID)): \(Self.describe(notice))")
                        }
                    case .kicked:
                        if output.json { output.printJSON(["event": "kicked"]) }
                    case .chatRefused(let clientMessageID, let error):
                        if output.json {
                            output.printJSON([
                                "event": "chat_refused", "client_msg_id": clientMessageID, "code": error.code.rawValue, "message": error.message,
                            ])
                        }
                        warn("the server refused chat \(clientMessageID): \(error)")
                    case .error(let error):
                        if output.json { output.printJSON(["event": "error", "code": error.code.rawValue, "message": error.message]) }
                        warn("the server reported: \(error)")
                    case .other:
                        break
                    }
                }
            } catch {
                await connection.close()
                throw error
            }
            do {
                try await connection.quit()
            } catch {
                warn("warning: the session did not end cleanly: \(error.message)")
            }
        } catch {
            throw output.fail(error)
        }
    }

    /// The time now, in milliseconds since 1970 (16 carries none).
    private static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// What a group notice says, e.g. `bob@alpha.example was removed by alice@alpha.example`.
    static func describe(_ notice: GroupNotice) -> String {
        switch notice.kind {
        case .joined: "\(notice.username) joined" + (notice.by.map { " (added by \($0))" } ?? "")
        case .left: "\(notice.username) left"
        case .removed: "\(notice.username) was removed" + (notice.by.map { " by \($0)" } ?? "")
        }
    }

    private func show(_ delivery: ChatDelivery, me: String) {
        if output.json {
            print(HistoryRecord(delivery).jsonLine)
            return
        }
        let body = switch delivery.content {
        case .text(let text): text
        case .image(let bytes, let mime): "[image\(mime.map { " \($0)" } ?? ""), \(bytes.count) bytes]"
        }
        let target = delivery.kind == .group ? "#\(delivery.targetName)" : delivery.targetName
        print("\(SessionSummary.iso8601(delivery.time))  \(delivery.senderName) → \(target)  \(body)")
    }

    private func warn(_ text: String) {
        FileHandle.standardError.write(Data("myim: \(text)\n".utf8))
    }
}

/// `myim chat [PEER]`: an interactive chat on standard input and output.
struct ChatCommandLine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat interactively: type a line to send it, see messages as they arrive.",
        discussion: """
            Waiting messages are shown first, then everything that arrives; each is kept in the local history and \
            acknowledged. Commands: /to NAME (talk to someone else), /group GROUP (talk to a group, by id or name), \
            /groups, /friends (who is online), /help, /quit. The end \
            of input quits too, so `myim chat bob < lines.txt` sends a file line by line. Exits with 1 when the \
            connection fails or a newer login takes over.
            """
    )

    @Argument(help: "Whom to talk to first, e.g. bob or bob@alpha.example (or later with /to).")
    var peer: String?

    @OptionGroup var endpoint: MessagingEndpointOptions
    @OptionGroup var output: ClientOutputOptions

    func run() async throws {
        do {
            let connection = try await endpoint.connect(home: output.clientHome)
            let session = ChatSession(connection: connection, peer: peer) { line in
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
            if let ended = await session.run(lines: Self.standardInputLines()) { throw ended }
        } catch {
            throw output.fail(error)
        }
    }

    /// Standard input, line by line, read on a thread of its own (reading blocks).
    private static func standardInputLines() -> AsyncStream<String> {
        let (lines, continuation) = AsyncStream<String>.makeStream()
        let reader = Thread {
            while let line = readLine(strippingNewline: true) {
                if case .terminated = continuation.yield(line) { return }
            }
            continuation.finish()
        }
        reader.start()
        return lines
    }
}
