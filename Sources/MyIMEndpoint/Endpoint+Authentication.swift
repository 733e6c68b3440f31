import Foundation
import MyIMAuth
import MyIMLink
import MyIMWire
import NIOCore

/// A verified token auth (41): the token's claims, and what the client asked for.
struct TokenAuthentication: Sendable {
    var claims: TokenClaims
    var senderCopies: Bool
}

/// Token auth of a client connection (``ClientSessionHandler``).
extension Endpoint {
    /// The connection's first packet as a token auth (41), or why it is not one.
    func tokenAuth(in packet: Packet) -> Result<TokenAuth, EndpointError> {
        guard packet.type == MessageType.tokenAuth.rawValue else {
            return .failure(EndpointError(
                .notLoggedIn, "authenticate first: the first message on an endpoint must be token auth (41), not \(packet.type)"))
        }
        do {
            return .success(try TokenAuth(packet: packet))
        } catch {
            return .failure(EndpointError(error.code, error.message))
        }
    }

    /// The token's claims if it is valid for this domain and the device the client names, and
    /// its `sender_copies`. (`verify` itself answers a remembered token without its signature.)
    func authenticate(_ auth: TokenAuth) async -> Result<TokenAuthentication, EndpointError> {
        do {
            return accept(try await verifier.verify(auth.token, now: now), of: auth)
        } catch {
            return .failure(EndpointError(error.code, error.message))
        }
    }

    /// What ``authenticate(_:)`` says, without waiting, when this endpoint verified the token
    /// before (`nil` otherwise: only `authenticate` can tell).
    func authenticateRemembered(_ auth: TokenAuth) -> Result<TokenAuthentication, EndpointError>? {
        do {
            guard let claims = try verifier.verifyRemembered(auth.token, now: now) else { return nil }
            return accept(claims, of: auth)
        } catch {
            return .failure(EndpointError(error.code, error.message))
        }
    }

    private var now: Date { Date(timeIntervalSince1970: Double(configuration.clock()) / 1000) }

    /// Verified claims, checked against this endpoint's domain and the device the client names.
    private func accept(_ claims: TokenClaims, of auth: TokenAuth) -> Result<TokenAuthentication, EndpointError> {
        guard claims.address.lowercased().hasSuffix("@\(configuration.domain.lowercased())") else {
            return .failure(EndpointError(
                .unknownDomain, "this endpoint serves \(configuration.domain), not \(claims.address); connect to an endpoint of your domain"))
        }
        if let device = auth.device, TokenClaims.deviceHash(of: device) != claims.deviceHash {
            return .failure(EndpointError(.invalidDevice, "the token was issued to another device; log in again on this one"))
        }
        return .success(TokenAuthentication(claims: claims, senderCopies: auth.senderCopies))
    }
}
