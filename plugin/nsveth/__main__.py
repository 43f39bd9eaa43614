from nsveth.main import main

main()
