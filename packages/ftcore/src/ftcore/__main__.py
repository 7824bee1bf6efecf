from ftcore.cli import main

main()
