/**
 * This agent's version (MAJOR.MINOR.PATCH). A release is built from the tree whose version this is
 * (`npm run release -- build --version` refuses any other), and the launcher checks that a started release
 * reports the version its signed manifest names.
 */
export const AGENT_VERSION = "0.2.0";
