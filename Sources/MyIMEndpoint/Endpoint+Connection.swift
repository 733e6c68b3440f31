import Foundation
import Logging
import Metrics
import MyIMAuth
import MyIMLink
import MyIMTransport
import MyIMWire
import NIOCore

/// One client connection: admission, token auth, binding at the center, then relaying.
extension Endpoint {
    typealias Packets = NIOAsyncChannelInboundStream<Packet>.AsyncIterator
    typealias Writer = NIOAsyncChannelOutboundWriter<Packet>

    /// Serves one accepted connection until it closes. Never throws: failures end the connection.
    ///
    /// A source over its connection limit still completes the handshake (cheap with Ed25519), so
    /// that it can be told why: 20 with 331, then close.
    func handle(_ connection: SecureConnection) async {
        let source = connection.channel.channel.remoteAddress?.ipAddress ?? "unknown"
        var logger = logger
        logger[metadataKey: "source"] = "\(source)"
        let admitted = limiter.acquire(source)
        defer { if admitted { limiter.release(source) } }
        EndpointMetrics.connections.increment()
        defer { EndpointMetrics.connections.decrement() }
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                do {
                    _ = try await connection.session.get()
                    EndpointMetrics.handshake(failure: nil)
                } catch {
                    EndpointMetrics.handshake(failure: error)
                    throw error
                }
                guard admitted else {
                    logger.notice("connection refused: too many from this source", metadata: ["limit": "\(limiter.maximum)"])
                    try await outbound.write(EndpointError(
                        .tooManyConnections,
                        "too many connections from \(source) (at most \(limiter.maximum)); close some and retry").packet)
                    return
                }
                var packets = inbound.makeAsyncIterator()
                guard let first = try await packets.next() else { return }
                let claims: TokenClaims
                switch await authenticate(first) {
                case .success(let verified):
                    claims = verified
                case .failure(let refusal):
                    logger.notice("authentication refused", metadata: ["code": "\(refusal.code)", "reason": "\(refusal.message)"])
                    try await outbound.write(refusal.packet)
                    return
                }
                await serveSession(claims, packets: &packets, outbound: outbound, channel: connection.channel.channel, logger: logger)
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// The claims of the first packet if it is a valid token auth (41) for this domain.
    func authenticate(_ packet: Packet) async -> Result<TokenClaims, EndpointError> {
        guard packet.type == MessageType.tokenAuth.rawValue else {
            return .failure(EndpointError(
                .notLoggedIn, "authenticate first: the first message on an endpoint must be token auth (41), not \(packet.type)"))
        }
        let auth: TokenAuth
        let claims: TokenClaims
        do {
            auth = try TokenAuth(packet: packet)
        } catch {
            return .failure(EndpointError(error.code, error.message))
        }
        do {
            claims = try await verifier.verify(auth.token, now: Date(timeIntervalSince1970: Double(configuration.clock()) / 1000))
        } catch {
            return .failure(EndpointError(error.code, error.message))
        }
        guard claims.address.lowercased().hasSuffix("@\(configuration.domain.lowercased())") else {
            return .failure(EndpointError(
                .unknownDomain, "this endpoint serves \(configuration.domain), not \(claims.address); connect to an endpoint of your domain"))
        }
        if let device = auth.device, TokenClaims.deviceHash(of: device) != claims.deviceHash {
            return .failure(EndpointError(.invalidDevice, "the token was issued to another device; log in again on this one"))
        }
        return .success(claims)
    }

    /// Opens the session at the center, waits for it to be bound, then relays until either side
    /// ends it; finally tells the center why it ended (`SessionClose`).
    private func serveSession(
        _ claims: TokenClaims, packets: inout Packets, outbound: Writer, channel: any Channel, logger: Logger
    ) async {
        let outbox = ClientOutbox(channel: channel)
        let info = await table.open(
            user: claims.address, userID: claims.userID, login: claims.sessionID, device: claims.deviceHash, outbox: outbox)
        var logger = logger
        logger[metadataKey: "session"] = "\(info.session)"
        logger[metadataKey: "user"] = "\(info.user)"
        logger.debug("token verified; opening the session at the center")
        await link.sendPendingOpens()

        let ended: String
        if await waitUntilBound(info.session) {
            logger.info("session open")
            ended = await relay(from: &packets, session: info.session, outbox: outbox)
        } else {
            logger.notice("the session was not bound (timeout, kick or shutdown); closing")
            ended = "the center did not bind the session"
        }
        let reason = await table.remove(info.session)?.closeReason ?? ended
        try? await link.send(SessionClose(session: info.session, reason: reason))
        logger.info("session closed", metadata: ["reason": "\(reason)"])
    }

    /// `true` once the center has bound `session`; `false` after
    /// ``EndpointConfiguration/sessionReadyTimeout`` (the client is then told 330 and closed).
    private func waitUntilBound(_ session: String) async -> Bool {
        let timeout = configuration.sessionReadyTimeout
        return await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await self.table.waitUntilBound(session) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                // Also on cancellation (the endpoint stopping): it resumes the waiter above.
                await self.table.expire(session, error: EndpointError(
                    .centerUnavailable, "the center did not accept the session in time; retry"))
                return nil
            }
            var bound = false
            for await result in group {
                guard let result else { continue }
                bound = result
                group.cancelAll()
            }
            return bound
        }
    }

    /// Reads the client until it goes away; returns why it did.
    private func relay(from packets: inout Packets, session: String, outbox: ClientOutbox) async -> String {
        func reply(_ packet: Packet) {
            if !outbox.write(packet) { outbox.close() }
        }
        do {
            while let packet = try await packets.next() {
                EndpointMetrics.messageIn(packet.type)
                switch ClientPacketRoute(type: packet.type) {
                case .ping:
                    do {
                        reply(Pong(time: try Ping(packet: packet).time).packet)
                    } catch {
                        reply(ErrorMessage(code: error.code, data: error.message).packet)
                    }
                case .ignore:
                    break
                case .relay:
                    // Counted before it leaves, so that its 8 cannot come back first.
                    let owed = await table.relayed(chat: packet, for: session)
                    do {
                        try await link.send(FromClient(session: session, payload: packet))
                    } catch {
                        if owed { await table.settled(session) }
                        reply(error.packet)
                    }
                case .refuse(let code, let message):
                    reply(ErrorMessage(code: code, data: message).packet)
                }
            }
            return "the client disconnected"
        } catch let error as IdleTimeout {
            return error.description
        } catch is CancellationError {
            return "the endpoint is shutting down"
        } catch {
            return "connection error: \(error)"
        }
    }
}
