//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The process's cache storage (`cache_storage`), shared by every route with `cache`. Kept across reloads
/// unless its sizes change.
public struct CacheStorageConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Memory for stored responses (bodies and fields); the least recently used are evicted beyond it.
    /// Default `64MiB`.
    public var maxSize: ByteSize?
    /// A response larger than this is passed on but not stored. Default: the smaller of `8MiB` and an eighth of
    /// `max_size`.
    public var maxObjectSize: ByteSize?
    /// A second tier on disk: every stored response is also written to a directory (off the EventLoops) and
    /// read back when memory no longer holds it, including after a restart. Off by default.
    public var disk: CacheDiskConfig?

    public init(maxSize: ByteSize? = nil, maxObjectSize: ByteSize? = nil, disk: CacheDiskConfig? = nil) {
        self.maxSize = maxSize
        self.maxObjectSize = maxObjectSize
        self.disk = disk
    }

    public static var configPlaceholder: CacheStorageConfig { .init() }

    public var effectiveMaxSize: Int { self.maxSize?.bytes ?? 64 << 20 }
    public var effectiveMaxObjectSize: Int { self.maxObjectSize?.bytes ?? min(8 << 20, self.effectiveMaxSize / 8) }
}

/// `cache_storage.disk`: where the disk tier keeps its files and how many bytes it may use.
public struct CacheDiskConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// A directory for Portico alone (created if missing): files in its subdirectories that are not Portico's
    /// cache files are removed.
    public var path: String
    /// Bytes of files kept; the least recently used responses are deleted beyond it. Default `1GiB`.
    public var maxSize: ByteSize?

    public init(path: String, maxSize: ByteSize? = nil) {
        self.path = path
        self.maxSize = maxSize
    }

    public static var configPlaceholder: CacheDiskConfig { .init(path: "") }

    public var effectiveMaxSize: Int { self.maxSize?.bytes ?? 1 << 30 }
}

/// A route's `cache` (RFC 9111, shared cache): responses to GET are stored when their fields allow it and
/// served to later requests while fresh. `cache: {}` turns it on with the defaults.
public struct CacheConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// What identifies a stored response besides the scheme, host and path.
    public var key: CacheKeyConfig?
    /// The cap on heuristic freshness for responses without explicit freshness (10 % of their age since
    /// `Last-Modified`, RFC 9111 §4.2.2). Default `1d`.
    public var heuristicMax: ConfigDuration?
    /// Store responses that set cookies. Default `false` (one client's cookie would reach every client).
    public var storeSetCookie: Bool?
    /// Concurrent misses for one response wait for the first one's response up to this long, then go upstream
    /// themselves (nginx `proxy_cache_lock_timeout`). Default `5s`; `0s` turns collapsing off.
    public var lockTimeout: ConfigDuration?
    /// Client addresses (CIDR) allowed to send `PURGE` for a URL (or, with `Surrogate-Key` / `Cache-Tag`
    /// request fields, for tags). Default: none (PURGE is forwarded like any other method).
    public var purgeAllow: [String]?
    /// Add `key=` to `Cache-Status` (for debugging). Default `false`.
    public var statusKey: Bool?
    /// Cache POST requests too (queries sent as POST: GraphQL, search): keyed by their body as well, stored only
    /// with explicit freshness. Off by default.
    public var post: CachePostConfig?

    public init(key: CacheKeyConfig? = nil, heuristicMax: ConfigDuration? = nil, storeSetCookie: Bool? = nil,
                lockTimeout: ConfigDuration? = nil, purgeAllow: [String]? = nil, statusKey: Bool? = nil) {
        self.key = key
        self.heuristicMax = heuristicMax
        self.storeSetCookie = storeSetCookie
        self.lockTimeout = lockTimeout
        self.purgeAllow = purgeAllow
        self.statusKey = statusKey
    }

    public static var configPlaceholder: CacheConfig { .init() }
}

/// A route cache's `post`.
public struct CachePostConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Requests with a `Content-Length` up to this are cached (their body is read before the lookup); larger
    /// ones, and bodies of unknown length, go upstream uncached. Default `64KiB`, at most `1MiB`.
    public var maxBody: ByteSize?

    public init(maxBody: ByteSize? = nil) {
        self.maxBody = maxBody
    }

    public static var configPlaceholder: CachePostConfig { .init() }
}

/// The cache key: scheme, host and path always; the query unless turned off; request fields and cookies when
/// listed (they select among stored variants, as `Vary` does, so a URL is purged or invalidated as a whole).
public struct CacheKeyConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Include the query string. Default `true`.
    public var query: Bool?
    /// Request fields whose values are part of the key.
    public var headers: [String]?
    /// Cookies (by name) whose values are part of the key.
    public var cookies: [String]?

    public init(query: Bool? = nil, headers: [String]? = nil, cookies: [String]? = nil) {
        self.query = query
        self.headers = headers
        self.cookies = cookies
    }

    public static var configPlaceholder: CacheKeyConfig { .init() }
}
