//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCompression
import PorticoCore

/// The filters a route's config adds to its chain (`RoutingTable.compile(routeFilters:)`), in the order they run:
/// after the global forwarding filter and the route's header rules, before its fixed response or redirect.
///
/// Order matters in the response direction: compression comes last so every filter before it (a cache, when
/// there is one) sees the origin's own representation.
enum RouteFilters {
    static func make(_ route: RouteConfig) -> [any ProxyFilter] {
        var filters: [any ProxyFilter] = []
        if let compression = route.compression {
            filters.append(CompressionFilter(policy: CompressionPolicy(compression)))
        }
        return filters
    }
}
