import Logging
import MyIMLink
import MyIMRedis

/// Connects to the topology's Redis, waiting for it: roles may start before Redis answers
/// (compose, a host booting), so a refused connection is retried with a capped backoff for
/// up to `limit`, each failure logged, before the role gives up. The client reconnects by
/// itself if Redis restarts later.
func connectRedis(_ url: RedisURL, logger: Logger, limit: Duration = .seconds(60)) async throws -> RedisClient {
    let deadline = ContinuousClock.now + limit
    var backoff = ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(3))
    while true {
        do {
            return try await RedisClient.connect(to: url, configuration: .init(commandTimeout: .seconds(5)))
        } catch {
            guard ContinuousClock.now < deadline else { throw error }
            logger.notice("Redis does not answer yet; retrying", metadata: ["redis": "\(url)", "error": "\(error)"])
            try await Task.sleep(for: backoff.next())
        }
    }
}
