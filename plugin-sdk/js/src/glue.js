// The component's `guest` export: the plugin's metadata and calls in the WIT
// shapes of `plexus:plugin/guest@0.2.0`, over the WIT host functions. The
// build generates an entry module that passes `plexus:plugin/host@0.2.0` here.

import { dispatch } from './index.js';

/**
 * The object to export as `guest`.
 *
 * @param {object} plugin from definePlugin
 * @param {object} host the `plexus:plugin/host@0.2.0` functions
 * @returns {{describe(): object, call(ectx: object): Promise<object>}}
 */
export function makeGuest(plugin, host) {
  return {
    describe() {
      return plugin.metadata;
    },
    async call(ectx) {
      try {
        return await dispatch(plugin, ectx, host);
      } catch (error) {
        // componentize-js lifts a thrown plugin-error record into `err(...)`.
        throw error.toData();
      }
    },
  };
}
