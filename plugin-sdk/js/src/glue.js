// The component's `guest` export: the plugin's metadata, lifecycle hooks and
// calls in the WIT shapes of `plexus:plugin/guest@0.4.0`, over the WIT host
// functions. The build generates an entry module that passes
// `plexus:plugin/host@0.4.0` here.

import { cleanup, dispatch, initialize } from './index.js';

/**
 * The object to export as `guest`.
 *
 * @param {object} plugin from definePlugin
 * @param {object} host the `plexus:plugin/host@0.4.0` functions
 * @returns {{describe(): object, initialize(config: string): Promise<void>, cleanup(): Promise<void>,
 *   call(ectx: object): Promise<object>}}
 */
export function makeGuest(plugin, host) {
  return {
    describe() {
      return plugin.metadata;
    },
    async initialize(config) {
      try {
        await initialize(plugin, config);
      } catch (error) {
        throw error.toData();
      }
    },
    async cleanup() {
      await cleanup(plugin);
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
