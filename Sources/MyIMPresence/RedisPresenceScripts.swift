/// The Lua scripts behind ``RedisPresenceStore``. Each runs atomically in Redis, which is what
/// makes a login's compare-and-set safe against a concurrent login of the same user.
///
/// They are sent with `EVAL` (Redis caches them by SHA-1 itself); `EVALSHA` would save a few hundred
/// bytes per call at the price of handling `NOSCRIPT` after a Redis restart or `SCRIPT FLUSH`.
/// Keys other than `KEYS[...]` are built from the prefix inside the scripts, which is fine for a
/// single Redis but not for Redis Cluster.
enum RedisPresenceScripts {
    /// KEYS[1] presence hash, KEYS[2] the new endpoint's user set.
    /// ARGV: prefix, name, endpoint, session, device, since, ttl.
    /// Returns the previous {endpoint, session, device, since} if another session held the user, else nil.
    static let setOnline = """
        local previous = redis.call('HMGET', KEYS[1], 'endpoint', 'session', 'device', 'since')
        if previous[1] and previous[1] ~= ARGV[3] then
          redis.call('SREM', ARGV[1] .. 'endpoint:' .. previous[1] .. ':users', ARGV[2])
        end
        redis.call('DEL', KEYS[1])
        redis.call('HSET', KEYS[1], 'endpoint', ARGV[3], 'session', ARGV[4], 'device', ARGV[5], 'since', ARGV[6])
        redis.call('EXPIRE', KEYS[1], ARGV[7])
        redis.call('SADD', KEYS[2], ARGV[2])
        if previous[1] and previous[2] ~= ARGV[4] then
          return previous
        end
        return false
        """

    /// KEYS[1] presence hash. ARGV: prefix, name, session. Returns 1 if removed, 0 if another session holds it.
    static let setOffline = """
        local held = redis.call('HMGET', KEYS[1], 'session', 'endpoint')
        if held[1] ~= ARGV[3] then
          return 0
        end
        redis.call('DEL', KEYS[1])
        if held[2] then
          redis.call('SREM', ARGV[1] .. 'endpoint:' .. held[2] .. ':users', ARGV[2])
        end
        return 1
        """

    /// ARGV: prefix, endpoint, ttl, names... Refreshes the entries the endpoint still holds (and
    /// re-adds them to its set, repairing it if a cleanup ran too eagerly). Returns how many.
    static let heartbeatUsers = """
        local prefix, endpoint, ttl = ARGV[1], ARGV[2], ARGV[3]
        local users = prefix .. 'endpoint:' .. endpoint .. ':users'
        local refreshed = 0
        for i = 4, #ARGV do
          local key = prefix .. 'presence:' .. ARGV[i]
          if redis.call('HGET', key, 'endpoint') == endpoint then
            redis.call('EXPIRE', key, ttl)
            redis.call('SADD', users, ARGV[i])
            refreshed = refreshed + 1
          end
        end
        return refreshed
        """

    /// ARGV: prefix, "live" or "dead". Endpoint names from the ZSET whose liveness key does (not) exist.
    static let endpoints = """
        local prefix, wanted = ARGV[1], (ARGV[2] == 'live' and 1 or 0)
        local found = {}
        for _, name in ipairs(redis.call('ZRANGE', prefix .. 'endpoints', 0, -1)) do
          if redis.call('EXISTS', prefix .. 'endpoint:' .. name .. ':alive') == wanted then
            table.insert(found, name)
          end
        end
        return found
        """

    /// ARGV: prefix. The sum of the live endpoints' user-set sizes.
    static let onlineCount = """
        local prefix = ARGV[1]
        local count = 0
        for _, name in ipairs(redis.call('ZRANGE', prefix .. 'endpoints', 0, -1)) do
          if redis.call('EXISTS', prefix .. 'endpoint:' .. name .. ':alive') == 1 then
            count = count + redis.call('SCARD', prefix .. 'endpoint:' .. name .. ':users')
          end
        end
        return count
        """

    /// ARGV: prefix, endpoint. Deletes the entries the endpoint still holds, forgets the endpoint,
    /// and returns the names that went offline (held by it, or already expired).
    static let removeEndpoint = """
        local prefix, endpoint = ARGV[1], ARGV[2]
        local users = prefix .. 'endpoint:' .. endpoint .. ':users'
        local gone = {}
        for _, name in ipairs(redis.call('SMEMBERS', users)) do
          local key = prefix .. 'presence:' .. name
          local holder = redis.call('HGET', key, 'endpoint')
          if holder == endpoint then
            redis.call('DEL', key)
            table.insert(gone, name)
          elseif not holder then
            table.insert(gone, name)
          end
        end
        redis.call('DEL', users, prefix .. 'endpoint:' .. endpoint .. ':alive')
        redis.call('ZREM', prefix .. 'endpoints', endpoint)
        return gone
        """
}
